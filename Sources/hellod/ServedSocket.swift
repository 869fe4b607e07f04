import Glibc
import HelloSocket
import Logging
import SystemPackage

/// A reason hellod cannot start, said in one line.
struct StartFailure: Error {
    let message: String
}

/// A socket hellod serves, and how it came: bound by hellod, or passed by systemd.
struct ServedSocket {
    enum Origin: String {
        case bound = "bound"
        case activation = "socket activation"
    }

    let socket: DatagramSocket
    let origin: Origin
    let address: SocketAddress

    /// The sockets to serve: systemd's, if it passed any, else new ones bound to `listen`
    /// (default `[::]:9999`), `workers` per address.
    static func open(listen: [SocketAddress], workers: Int, log: Logger) throws -> [ServedSocket] {
        let inherited = Systemd.inheritedDescriptors()
        if !inherited.isEmpty {
            if !listen.isEmpty {
                log.notice("--listen ignored: serving the \(inherited.count) socket(s) systemd passed")
            }
            if workers != 1 {
                log.notice("--workers ignored: one worker per socket systemd passed")
            }
            return try inherited.map(adopt)
        }
        var sockets: [ServedSocket] = []
        do {
            for requested in listen.isEmpty ? [.anyIPv6(port: 9999)] : listen {
                var address = requested
                for _ in 0..<workers {
                    let socket = try bind(address, reusePort: workers > 1)
                    sockets.append(ServedSocket(socket: socket, origin: .bound, address: socket.localAddress))
                    address = socket.localAddress  // port 0: the others join the port the first got
                }
            }
        } catch {
            sockets.forEach { $0.socket.close() }
            throw error
        }
        return sockets
    }

    private static func bind(_ address: SocketAddress, reusePort: Bool) throws -> DatagramSocket {
        do {
            let socket = try DatagramSocket.bound(to: address, reusePort: reusePort)
            // Room for bursts: 4 MiB asked, the kernel caps it at net.core.rmem_max.
            try? socket.setReceiveBufferSize(4 << 20)
            return socket
        } catch {
            throw StartFailure(message: "cannot listen on \(address): \(error.errno)")
        }
    }

    private static func adopt(_ inherited: Systemd.InheritedDescriptor) throws -> ServedSocket {
        let fd = inherited.descriptor.rawValue
        guard let family = Systemd.datagramFamily(of: inherited.descriptor) else {
            throw StartFailure(message: "descriptor \(fd) (\(inherited.name)) from systemd is not a datagram socket: use ListenDatagram= in the .socket unit")
        }
        guard family == AF_INET || family == AF_INET6 else {
            throw StartFailure(message: "descriptor \(fd) (\(inherited.name)) from systemd is not an IPv4 or IPv6 socket (family \(family))")
        }
        let socket = DatagramSocket(adopting: inherited.descriptor)
        return ServedSocket(socket: socket, origin: .activation, address: socket.localAddress)
    }
}
