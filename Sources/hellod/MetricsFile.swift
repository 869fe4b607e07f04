import HelloCLI
import HelloLauncher
import HelloService
import HelloSocket
import Prometheus

/// hellod's counters in Prometheus's text exposition format, rewritten every
/// `--metrics-interval` into `--metrics-file` for node_exporter's textfile collector.
///
/// The supervisor thread alone updates and writes it, from the snapshot it takes anyway:
/// the workers never see it. swift-prometheus's registry renders the text (HELP and TYPE
/// lines, label escaping); its counters only go up, so each mirrors one of the workers'
/// counters by adding what that counter gained since the last update.
final class MetricsFile {
    let path: String
    let interval: UInt64
    /// In the same directory, so that rename(2) replaces the file in one step; not ending
    /// in `.prom`, so that node_exporter never reads it half written.
    private let temporaryPath: String
    private let registry: PrometheusCollectorRegistry
    private let up: Gauge
    private let services: [ServiceMetrics]
    private let socketsRead: [MirroredCounter]
    private let segmentedSends, segmentationFallbacks: MirroredCounter
    private let socketsSegmentationOff: [Gauge]
    private var text: [UInt8] = []

    /// `sockets`: each socket's service, in the start line's order.
    init(path: String, interval: UInt64, services: [ServiceName], sockets: [ServiceName]) {
        self.path = path
        self.interval = interval
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        temporaryPath = directory + "." + name + ".tmp"
        let registry = PrometheusCollectorRegistry()
        self.registry = registry

        up = registry.makeGauge(
            descriptor: hellod("up", help: "1 while hellod serves; 0 in the file's last write, at stop."))
        registry.makeGauge(
            descriptor: hellod(
                "start_time", unit: "seconds",
                help: "When hellod started, in seconds since the Unix epoch.")
        )
        .set(Posix.realTime())
        registry.makeGauge(
            descriptor: hellod("build_info", help: "Always 1: hellod's version, as hellod --version prints it."),
            labels: [("version", hellodVersion)]
        ).set(1.0)
        self.services = services.map {
            ServiceMetrics(service: $0.rawValue, schema: $0.counterSchema, registry: registry)
        }
        socketsRead = sockets.enumerated().map { index, service in
            MirroredCounter(
                registry.makeCounter(
                    descriptor: hellod(
                        "socket_datagrams_read", unit: "total",
                        help: "Datagrams read from each socket, numbered in the order of hellod's start line."),
                    labels: [("service", service.rawValue), ("socket", String(index))]))
        }
        segmentedSends = MirroredCounter(
            registry.makeCounter(
                descriptor: hellod(
                    "segmented_sends", unit: "total",
                    help: "Sends that carried several replies to one peer as UDP segments (GSO).")))
        segmentationFallbacks = MirroredCounter(
            registry.makeCounter(
                descriptor: hellod(
                    "segmented_sends_resent", unit: "total",
                    help: "Segmented sends the kernel refused (EIO, EINVAL, EMSGSIZE), sent again as plain datagrams."))
        )
        socketsSegmentationOff = sockets.enumerated().map { index, service in
            registry.makeGauge(
                descriptor: hellod(
                    "socket_gso_off",
                    help:
                        "1 once the kernel refused a segmented send on this socket with EIO: it sends plain datagrams from then on."
                ),
                labels: [("service", service.rawValue), ("socket", String(index))])
        }
    }

    /// Takes the counters of `snapshot`; `serving` is false for the last write, at stop.
    func update(_ snapshot: Snapshot, serving: Bool) {
        up.set(serving ? 1.0 : 0.0)
        for (metrics, (_, report)) in zip(services, snapshot.services) {
            metrics.update(report.counters)
        }
        for (mirror, report) in zip(socketsRead, snapshot.perSocket) {
            mirror.update(report.counters.read)
        }
        let total = snapshot.total
        segmentedSends.update(total.segmentedSends)
        segmentationFallbacks.update(total.segmentationFallbacks)
        for (gauge, report) in zip(socketsSegmentationOff, snapshot.perSocket) {
            gauge.set(report.segmentationOff > 0 ? 1.0 : 0.0)
        }
    }

    /// Writes the file: a temporary file beside it, then rename(2), so a reader sees the
    /// whole of the old file or the whole of the new one. Throws what failed, every time.
    func write() throws(MetricsFileError) {
        text.removeAll(keepingCapacity: true)
        registry.emit(into: &text)
        let file: WritableFile
        do {
            file = try WritableFile(creating: temporaryPath, permissions: 0o644)
        } catch {
            throw .cannotCreate(path: temporaryPath, error.errno)
        }
        do {
            try fill(file)
            try replaceFile()
        } catch {
            try? Posix.unlink(temporaryPath)
            throw error
        }
    }

    /// Puts the temporary file in the file's place.
    private func replaceFile() throws(MetricsFileError) {
        do {
            try Posix.rename(temporaryPath, to: path)
        } catch {
            throw .cannotRename(from: temporaryPath, to: path, error.errno)
        }
    }

    /// Writes the text to `file` and closes it.
    private func fill(_ file: consuming WritableFile) throws(MetricsFileError) {
        do {
            // The unit's UMask=0077 would leave it 0600: node_exporter runs as another user.
            try file.setPermissions(0o644)
        } catch {
            throw .cannotSetPermissions(path: temporaryPath, error.errno)
        }
        do {
            try file.writeAll(text)
            try file.close()
        } catch {
            throw .cannotWrite(path: temporaryPath, error.errno)
        }
    }
}

/// hellod_NAME_UNIT, with its HELP line.
private func hellod(_ name: String, unit: String = "", help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(namespace: "hellod", metricName: name, unitName: unit, helpText: help)
}

/// One service's series, labelled service="NAME": the generic ones, then what its schema
/// declares (its drop reasons, its figures).
private struct ServiceMetrics {
    let read, replied, queueDrops, deliveries, deliveryFailures: MirroredCounter
    let drops: [(CounterID, MirroredCounter)]
    let figures: [(CounterID, FigureMetric)]

    init(service: String, schema: CounterSchema, registry: PrometheusCollectorRegistry) {
        let labels = [("service", service)]
        func counter(_ name: String, _ help: String) -> MirroredCounter {
            MirroredCounter(registry.makeCounter(descriptor: hellod(name, unit: "total", help: help), labels: labels))
        }
        read = counter("datagrams_read", "Datagrams read; each is replied to or dropped for one reason.")
        replied = counter("datagrams_replied", "Requests whose reply the kernel took.")
        queueDrops = counter(
            "kernel_queue_drops",
            "Datagrams the kernel dropped on a full receive queue, never read (SO_MEMINFO).")
        deliveries = counter(
            "deliveries",
            "Datagrams sent beyond one reply per request: chat events to a room's members, notices.")
        deliveryFailures = counter("delivery_failures", "Deliveries the kernel refused.")
        drops = schema.drops.map { reason in
            (
                reason,
                MirroredCounter(
                    registry.makeCounter(
                        descriptor: hellod(
                            "datagrams_dropped", unit: "total",
                            help: "Datagrams read and not replied to, by the reason (man hellod, COUNTERS)."),
                        labels: labels + [("reason", schema.name(of: reason))]))
            )
        }
        figures = schema.figures.map { id in
            let spec = schema.spec(id)
            let name = service + "_" + spec.name
            switch spec.kind {
            case .gauge:
                return (id, .gauge(registry.makeGauge(descriptor: hellod(name, help: spec.help), labels: labels)))
            case .counter: return (id, .counter(counter(name, spec.help)))
            }
        }
    }

    func update(_ c: Counters) {
        read.update(c.read)
        replied.update(c.replied)
        queueDrops.update(c.queueOverflows)
        deliveries.update(c.deliveries)
        deliveryFailures.update(c.deliveryFailures)
        for (reason, mirror) in drops { mirror.update(c[reason]) }
        for (id, metric) in figures {
            switch metric {
            case .gauge(let gauge): gauge.set(Double(c[id]))
            case .counter(let mirror): mirror.update(c[id])
            }
        }
    }
}

/// A figure's series: a gauge set to its value, or a counter following it.
private enum FigureMetric {
    case gauge(Gauge)
    case counter(MirroredCounter)
}

/// A Prometheus counter that follows one of hellod's own.
private final class MirroredCounter {
    let counter: Counter
    private var last: UInt64 = 0

    init(_ counter: Counter) { self.counter = counter }

    func update(_ value: UInt64) {
        if value > last { counter.increment(by: Int64(value - last)) }
        last = max(last, value)
    }
}
