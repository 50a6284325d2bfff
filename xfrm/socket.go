package xfrm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// BypassSocket exempts the UDP or TCP socket fd from the IPsec policies,
// in and out, as IKE sockets must be: otherwise a transport-mode policy
// between the IKE peers would catch IKE's own packets.
func BypassSocket(fd uintptr) error {
	dom, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("xfrm: bypass socket: %w", err)
	}
	level, opt, fam := unix.SOL_IP, unix.IP_XFRM_POLICY, uint16(unix.AF_INET)
	if dom == unix.AF_INET6 {
		level, opt, fam = unix.SOL_IPV6, unix.IPV6_XFRM_POLICY, unix.AF_INET6
	}
	for _, dir := range []Dir{In, Out} {
		p := encodeSocketBypass(fam, dir)
		if err := setsockoptBytes(int(fd), level, opt, p); err != nil {
			return fmt.Errorf("xfrm: bypass socket (%v): %w", dir, err)
		}
	}
	return nil
}

// EncapSocket makes the kernel take the ESP-in-UDP datagrams (RFC 3948)
// arriving on UDP socket fd for its SAs; IKE messages, with the non-ESP
// marker, still reach the socket. It is for the NAT-T (4500) socket.
func EncapSocket(fd uintptr) error {
	if err := unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP); err != nil {
		return fmt.Errorf("xfrm: UDP_ENCAP on NAT-T socket: %w", err)
	}
	return nil
}

// setsockoptBytes sets a socket option whose value is an opaque struct.
func setsockoptBytes(fd, level, opt int, v []byte) error {
	// unix has no []byte setter; SetsockoptString passes the bytes
	// unchanged.
	return unix.SetsockoptString(fd, level, opt, string(v))
}
