import HelloLauncher
import HelloServer
import HelloService
import Testing

/// The published report carries a service's counters as its schema lists them, whatever
/// the service: the worker's layer names none of them.
@Suite struct PublishedReportTests {
    @Test(arguments: ServiceName.allCases)
    func everyCounterOfTheSchemaComesBack(service: ServiceName) {
        let schema = service.counterSchema
        let published = PublishedReport(schema: schema)
        // Before the worker's first publish, the report already lists the service's counters.
        #expect(published.snapshot().counters.schema === schema)
        var report = WorkerReport()
        report.counters = Counters(schema: schema)
        for i in 0..<schema.count { report.counters[CounterID(i)] = UInt64(100 + i) }
        report.batches = 7
        report.lastSendErrno = 11
        published.publish(report)
        let snapshot = published.snapshot()
        #expect(snapshot == report)
        #expect(
            (0..<schema.count).map { snapshot.counters[CounterID($0)] } == (0..<schema.count).map { UInt64(100 + $0) })
    }
}
