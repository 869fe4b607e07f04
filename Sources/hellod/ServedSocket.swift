import HelloCLI
import HelloLauncher
import HelloSocket
import Logging

/// A socket hellod serves, the service it answers with, and how it came: bound by hellod,
/// or passed by systemd.
struct ServedSocket {
    enum Origin: String {
        case bound = "bound"
        case activation = "socket activation"
    }

    let socket: DatagramSocket
    let service: ServiceName
    let origin: Origin
    let address: SocketAddress

    /// The sockets to serve: systemd's, if it passed any, else new ones bound to `listen`
    /// (default `[::]:9999`), `workers` per address. A socket whose service is not named
    /// (a bare `--listen ADDRESS`, a systemd socket without FileDescriptorName=) answers
    /// with `defaultService` (`--mode`).
    static func open(listen: [ListenAddress], defaultService: ServiceName, workers: Int, log: Logger)
        throws(StartFailure) -> [ServedSocket]
    {
        let inherited = Systemd.inheritedDescriptors()
        if !inherited.isEmpty {
            if !listen.isEmpty {
                log.notice("--listen ignored: serving the \(inherited.count) socket(s) systemd passed")
            }
            if workers != 1 {
                log.notice("--workers ignored: one worker per socket systemd passed")
            }
            var adopted: [ServedSocket] = []
            for descriptor in inherited {
                adopted.append(try adopt(descriptor, defaultService: defaultService))
            }
            return adopted
        }
        var sockets: [ServedSocket] = []
        do {
            for requested in listen.isEmpty ? [ListenAddress(service: nil, address: .anyIPv6(port: 9999))] : listen {
                var address = requested.address
                for _ in 0..<workers {
                    let socket = try bind(address, reusePort: workers > 1)
                    let local = try localAddress(of: socket)
                    sockets.append(
                        ServedSocket(
                            socket: socket, service: requested.service ?? defaultService,
                            origin: .bound, address: local))
                    address = local  // port 0: the others join the port the first got
                }
            }
        } catch {
            sockets.forEach { try? $0.socket.close() }  // the failure to start is what is reported
            throw error
        }
        return sockets
    }

    /// The service a socket from systemd answers with, by its FileDescriptorName=, never by
    /// its position: a service's name; "unknown" (systemd-socket-activate without --fdname)
    /// or systemd's default, the unit's name ("hellod.socket"), means `--mode`.
    static func service(named name: String, defaultService: ServiceName) -> ServiceName? {
        if let service = ServiceName(rawValue: name) { return service }
        if name == "unknown" || name.hasSuffix(".socket") { return defaultService }
        return nil
    }

    private static func bind(_ address: SocketAddress, reusePort: Bool) throws(StartFailure) -> DatagramSocket {
        do {
            let socket = try DatagramSocket.bound(to: address, reusePort: reusePort)
            // Room for bursts: 4 MiB asked, the kernel caps it at net.core.rmem_max.
            try? socket.setReceiveBufferSize(4 << 20)
            return socket
        } catch {
            throw .cannotListen(address, error.errno)
        }
    }

    private static func localAddress(of socket: DatagramSocket) throws(StartFailure) -> SocketAddress {
        do {
            return try socket.localAddress()
        } catch {
            throw .cannotReadAddress(descriptor: socket.descriptor.rawValue, error)
        }
    }

    private static func adopt(_ inherited: Systemd.InheritedDescriptor, defaultService: ServiceName)
        throws(StartFailure) -> ServedSocket
    {
        let fd = inherited.descriptor.rawValue
        guard let service = service(named: inherited.name, defaultService: defaultService) else {
            throw .notAService(descriptor: fd, name: inherited.name)
        }
        guard Systemd.isDatagramSocket(inherited.descriptor) else {
            throw .notADatagramSocket(descriptor: fd, name: inherited.name)
        }
        let socket = DatagramSocket(adopting: inherited.descriptor)
        let address = try localAddress(of: socket)
        guard address.isInternet else {
            throw .notAnInternetSocket(descriptor: fd, name: inherited.name, family: address.family)
        }
        return ServedSocket(socket: socket, service: service, origin: .activation, address: address)
    }
}
