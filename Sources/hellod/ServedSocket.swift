import Glibc
import HelloCLI
import HelloCore
import HelloSocket
import Logging
import SystemPackage

/// A reason hellod cannot start, said in one line.
struct StartFailure: Error {
    let message: String
}

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
    static func open(listen: [ListenAddress], defaultService: ServiceName, workers: Int, log: Logger) throws -> [ServedSocket] {
        let inherited = Systemd.inheritedDescriptors()
        if !inherited.isEmpty {
            if !listen.isEmpty {
                log.notice("--listen ignored: serving the \(inherited.count) socket(s) systemd passed")
            }
            if workers != 1 {
                log.notice("--workers ignored: one worker per socket systemd passed")
            }
            return try inherited.map { try adopt($0, defaultService: defaultService) }
        }
        var sockets: [ServedSocket] = []
        do {
            for requested in listen.isEmpty ? [ListenAddress(service: nil, address: .anyIPv6(port: 9999))] : listen {
                var address = requested.address
                for _ in 0..<workers {
                    let socket = try bind(address, reusePort: workers > 1)
                    let local = try localAddress(of: socket)
                    sockets.append(ServedSocket(socket: socket, service: requested.service ?? defaultService,
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

    private static func localAddress(of socket: DatagramSocket) throws -> SocketAddress {
        do {
            return try socket.localAddress()
        } catch {
            throw StartFailure(message: "cannot read the address of descriptor \(socket.descriptor.rawValue): \(error)")
        }
    }

    private static func adopt(_ inherited: Systemd.InheritedDescriptor, defaultService: ServiceName) throws -> ServedSocket {
        let fd = inherited.descriptor.rawValue
        guard let service = service(named: inherited.name, defaultService: defaultService) else {
            let names = ServiceName.allCases.map(\.rawValue).joined(separator: ", ")
            throw StartFailure(message: "socket \(fd) from systemd is named \"\(inherited.name)\", which is no service: set FileDescriptorName= to one of \(names)")
        }
        guard Systemd.isDatagramSocket(inherited.descriptor) else {
            throw StartFailure(message: "descriptor \(fd) (\(inherited.name)) from systemd is not a datagram socket: use ListenDatagram= in the .socket unit")
        }
        let socket = DatagramSocket(adopting: inherited.descriptor)
        let address = try localAddress(of: socket)
        guard address.family == AF_INET || address.family == AF_INET6 else {
            throw StartFailure(message: "descriptor \(fd) (\(inherited.name)) from systemd is not an IPv4 or IPv6 socket (family \(address.family))")
        }
        return ServedSocket(socket: socket, service: service, origin: .activation, address: address)
    }
}
