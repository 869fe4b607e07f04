import HelloChat
import HelloReplies
import HelloService

/// The services hellod serves, by the name `--listen SERVICE@ADDRESS` and systemd's
/// FileDescriptorName= use. A new service is a module and a line in each switch here: the one place that knows
/// the list of services.
public enum ServiceName: String, Sendable, CaseIterable, Comparable {
    case hello
    case echo
    case chat

    /// Inlinable, so that the builder's module sees every service's concrete type and
    /// specializes its generic code for each: no dynamic dispatch per datagram.
    @inlinable
    public func build<Builder: ServiceBuilder>(
        _ settings: ServiceSettings, chat: ChatSettings = ChatSettings(),
        with builder: Builder
    ) -> Builder.Result {
        switch self {
        case .hello: return builder.build(ReplyService(HelloReply(), settings))
        case .echo: return builder.build(ReplyService(EchoReply(), settings))
        case .chat: return builder.build(ChatService(settings, chat: chat))
        }
    }

    /// Its counters, for the worker's published report, the status lines and the metrics file.
    public var counterSchema: CounterSchema {
        switch self {
        case .hello, .echo: return .generic
        case .chat: return ChatCounter.schema
        }
    }

    /// The reply rule of a service that answers each request with one datagram, for
    /// clients that check replies (hello, hello bench); nil for chat, which does not.
    public var replyRule: (any ReplyRule)? {
        switch self {
        case .hello: return HelloReply()
        case .echo: return EchoReply()
        case .chat: return nil
        }
    }

    public static func < (a: ServiceName, b: ServiceName) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}
