// nio-server PORT hello|echo: hello and echo over SwiftNIO, as NIO's own UDP echo example
// (NIOUDPEchoServer) is written: one event loop, a DatagramBootstrap on 127.0.0.1:PORT,
// each datagram answered in channelRead and the replies flushed once per read burst
// (channelReadComplete), with the example's gathering reads (vector reads: recvmmsg, here
// 64 datagrams a call, the yardsticks' batch); and 4 MiB socket buffers, as hellod and
// bench/reference/*.c have.
// "hello": a datagram NAME gets "Hello, NAME!"; "echo": its bytes come back.
import Glibc
import NIOCore
import NIOPosix

final class Responder: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let hello: Bool

    init(hello: Bool) { self.hello = hello }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let request = unwrapInboundIn(data)
        var reply: ByteBuffer
        if hello {
            reply = context.channel.allocator.buffer(capacity: request.data.readableBytes + 8)
            reply.writeStaticString("Hello, ")
            reply.writeImmutableBuffer(request.data)
            reply.writeStaticString("!")
        } else {
            reply = request.data
        }
        context.write(
            wrapOutboundOut(AddressedEnvelope(remoteAddress: request.remoteAddress, data: reply)), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let port = Int(arguments[1]), (1...65535).contains(port),
    arguments[2] == "hello" || arguments[2] == "echo"
else {
    let usage = "usage: nio-server PORT hello|echo\n"
    _ = usage.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    exit(64)
}
let hello = arguments[2] == "hello"
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let channel = try DatagramBootstrap(group: group)
    .channelOption(.socketOption(.so_reuseaddr), value: 1)
    .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
    .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
    .channelOption(.datagramVectorReadMessageCount, value: 64)
    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 2048))
    .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(Responder(hello: hello))
        }
    }
    .bind(host: "127.0.0.1", port: port)
    .wait()
try channel.closeFuture.wait()
