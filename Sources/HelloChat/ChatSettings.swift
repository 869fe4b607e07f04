import HelloChatWire
import HelloDatagram
import HelloService

/// The chat relay's tables, limits and times, fixed at start; and its secret.
public struct ChatSettings: Sendable {
    public var rooms = 64
    public var membersPerRoom = 32
    /// Memberships one source prefix (IPv4 /32, IPv6 /64 by default) may hold in all.
    public var membershipsPerPrefix = 8
    public var ipv4PrefixLength = 32
    public var ipv6PrefixLength = 64
    /// Events a joining member gets from the room's past.
    public var history = 32
    /// Events each room keeps for RESEND and for duplicates (at least `history`, and at
    /// least what one batch and one round of evictions can add, so that nothing is
    /// overwritten before it is sent).
    public var backlog = 256
    /// The longest message text (at most 1000 bytes).
    public var maxMessage = ChatWire.maxText
    /// Messages per second per member, and how many may come at once.
    public var messageRate: UInt64 = 5
    public var messageBurst: UInt64 = 10
    /// Deliveries per second per room, and how many may come at once: a message costs one
    /// per member of its room, the sender included, so this bounds what one room costs the
    /// relay whatever the members' own limits (raised, or renewed by leaving and joining
    /// again). The burst is taken as at least `membersPerRoom`, or a full room could never
    /// speak. The defaults never bind a room of the default size whose members keep to
    /// the default message limits: 32 members sending their bursts of 10 at once make
    /// 32 x 10 x 32 = 10,240 deliveries, then 32 x 5 x 32 = 5,120 a second; each default
    /// is twice that. A rename counts as a message; joins, leaves and time-outs do not
    /// (what a member does not choose to send is never refused).
    public var roomDeliveryRate: UInt64 = 10_240
    public var roomDeliveryBurst: UInt64 = 20_480
    /// Bytes per second per member of what it is sent again on request (RESEND, a
    /// KEEPALIVE's catch-up), and how many at once. Tokens travel in clear, so whoever sees
    /// a member's traffic can ask in its name, from its address: a RESEND brings up to 64
    /// datagrams of up to 1232 bytes for 18, and the message rate alone (one unit per
    /// request) would let it pull 5 x 64 x 1232 = 394 KB/s toward the member. The burst is
    /// one full RESEND, and is taken as at least one largest datagram (or a long event
    /// could never come again).
    public var repairByteRate: UInt64 = 65_536
    public var repairByteBurst = UInt64(ChatWire.maxResend * ChatWire.largestDatagram)
    /// Challenges and NOT A MEMBER answers per endpoint (address and port: forged traffic
    /// from other ports of an address cannot spend its budget). The table holds the
    /// endpoints answered in the last 1/rate s (1 s for one that took its burst at once):
    /// 16,384 fill only past some 300,000 forged datagrams a second, 15 times the default
    /// `unprovenAnswerCap` (a new endpoint is then refused, as one over the cap is).
    public var answerLimit = RateLimiter.Configuration(rate: 20, burst: 20, tableSize: 16_384, scope: .endpoint)
    /// Challenges and NOT A MEMBER answers from the whole relay, shared by its chat
    /// workers: at most 64 bytes each (a CHALLENGE), 1.28 MB/s at the default.
    public var unprovenAnswerCap = RelayRate(rate: 20_000, burst: 20_000)
    /// Memberships made per source prefix: a join is announced to the whole room, so a
    /// member that leaves and joins again in a loop must not flood it. The burst lets a
    /// prefix's memberships (8 by default) all come back at once after a restart.
    public var joinLimit = RateLimiter.Configuration(rate: 4, burst: 16, tableSize: 4096)
    /// Seconds a cookie key lives; a cookie of the current or the previous epoch is taken.
    public var epochSeconds: UInt64 = 120
    /// A member silent this long gets nothing more; this long, it is evicted.
    public var silenceSeconds: UInt64 = 35
    public var evictSeconds: UInt64 = 60
    /// The least time between two sends of one room's new events to its members
    /// (nanoseconds; 0: each batch's events go at its end). Above one message per interval
    /// a room's events gather, several to a datagram: fewer datagrams per delivery (the
    /// relay's cost is the kernel's, per datagram), for up to this much more latency. The
    /// first message after a quiet interval goes at once.
    public var fanOutInterval: UInt64 = 0
    /// 128 random bits (hellod reads them with getrandom(2)): the root of every cookie key,
    /// every token and the relay's instance id.
    public var secret: (UInt64, UInt64) = (0, 0)
    /// Where several chat workers share the rooms (`--workers N`, several sockets): how
    /// many, and which one this is. Each room belongs to one of them (`owner(of:)`), and a
    /// member's token names its room's worker in its top byte.
    public var workers = 1
    public var worker = 0

    public init() {}
}
