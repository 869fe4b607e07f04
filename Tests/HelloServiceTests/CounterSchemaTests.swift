import HelloService
import Testing

/// A service's counters as its schema declares them: the generic ones first, at fixed
/// places, then its own; sums by place or by name; drops and figures listed in order.
@Suite struct CounterSchemaTests {
    enum Own: Int, ServiceCounter {
        case refused, widgets, turns
        var spec: CounterSpec {
            switch self {
            case .refused: .drop("test-refused", "Refused by the test service.")
            case .widgets: .figure("widgets", .gauge, "Widgets now.")
            case .turns: .figure("turns", .counter, "Turns taken.")
            }
        }
    }

    static let schema = CounterSchema(Own.self, summary: [Own.widgets.id, .deliveries])

    @Test func theGenericCountersComeFirstThenTheService_s() {
        let schema = Self.schema
        #expect(schema.count == CounterSchema.generic.count + 3)
        #expect(schema.name(of: .read) == "read" && schema.name(of: .sendFailed) == "send-failed")
        #expect(Own.refused.id.index == CounterSchema.generic.count)
        #expect(schema.drops.map(schema.name(of:)).suffix(2) == ["send-failed", "test-refused"])
        #expect(schema.figures.map(schema.name(of:)) == ["widgets", "turns"])
        #expect(schema.spec(Own.widgets.id).kind == .gauge && schema.spec(Own.turns.id).kind == .counter)
        #expect(schema.id(named: "turns") == Own.turns.id && schema.handoverFull == nil)
    }

    @Test func countsAreKeptByPlaceAndSummedByPlaceOrByName() {
        var a = Counters(schema: Self.schema)
        a.read = 5
        a.replied = 3
        a[.truncated] = 1
        a[Own.refused.id] = 1
        a[Own.turns.id] = 7
        #expect(a.isBalanced && a.drops.total == 2)
        var generic = Counters()
        generic.read = 2
        generic.replied = 2
        // The generic schema is a prefix of every schema: the sum keeps the larger one.
        for sum in [a + generic, generic + a] {
            #expect(sum.schema === Self.schema)
            #expect(sum.read == 7 && sum.replied == 5 && sum[Own.turns.id] == 7 && sum.isBalanced)
        }
        #expect(a.value(named: "turns") == 7 && generic.value(named: "turns") == 0)
        #expect(a.drops.since(generic.drops).filter { $0.count > 0 }.map(\.name) == ["truncated", "test-refused"])
    }

    @Test func schemasOfDifferentServicesAddUpByName() {
        enum Other: Int, ServiceCounter {
            case turns, spins
            var spec: CounterSpec {
                switch self {
                case .turns: .figure("turns", .counter, "Turns taken.")
                case .spins: .figure("spins", .counter, "Spins.")
                }
            }
        }
        var a = Counters(schema: Self.schema)
        a[Own.turns.id] = 1
        var b = Counters(schema: CounterSchema(Other.self))
        b[Other.turns.id] = 2
        b[Other.spins.id] = 3
        let sum = a + b
        #expect(sum.value(named: "turns") == 3 && sum.value(named: "spins") == 3 && sum.value(named: "widgets") == 0)
    }
}
