package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// Netlink is an rtnetlink socket in the network namespace it was opened
// in. Its methods may be called from any goroutine.
type Netlink struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

// OpenNetlink opens an rtnetlink socket in the calling thread's network
// namespace.
func OpenNetlink() (*Netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("tun: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: netlink bind: %w", err)
	}
	// A lost answer must not hang the caller forever.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: netlink timeout: %w", err)
	}
	return &Netlink{fd: fd, buf: make([]byte, 1<<16)}, nil
}

// Close closes the socket.
func (n *Netlink) Close() error { return unix.Close(n.fd) }

// msg builds one netlink request.
type msg struct{ b []byte }

func newMsg(typ, flags uint16, hdr []byte) *msg {
	m := &msg{b: make([]byte, unix.NLMSG_HDRLEN, 128)}
	binary.NativeEndian.PutUint16(m.b[4:], typ)
	binary.NativeEndian.PutUint16(m.b[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	m.b = append(m.b, hdr...)
	return m
}

func (m *msg) attr(typ uint16, data []byte) {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	m.b = append(m.b, h[:]...)
	m.b = append(m.b, data...)
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *msg) u32(typ uint16, v uint32) {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

// do sends m and waits for its acknowledgement.
func (n *Netlink) do(m *msg) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	binary.NativeEndian.PutUint32(m.b[0:], uint32(len(m.b)))
	binary.NativeEndian.PutUint32(m.b[8:], n.seq)
	if err := unix.Sendto(n.fd, m.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	for {
		r, _, err := unix.Recvfrom(n.fd, n.buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		b := n.buf[:r]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := binary.NativeEndian.Uint32(b)
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			if l < unix.NLMSG_HDRLEN || int(l) > len(b) {
				return errors.New("netlink: malformed answer")
			}
			if seq == n.seq && typ == unix.NLMSG_ERROR {
				if l < unix.NLMSG_HDRLEN+4 {
					return errors.New("netlink: short error message")
				}
				if errno := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); errno != 0 {
					return unix.Errno(-errno)
				}
				return nil
			}
			b = b[(l+3)&^3:]
		}
	}
}

// SetLink brings link index up with the given MTU and transmit queue
// length (0: unchanged).
func (n *Netlink) SetLink(index, mtu, txQueueLen int) error {
	// struct ifinfomsg: family, pad, type, index, flags, change.
	h := make([]byte, 16)
	binary.NativeEndian.PutUint32(h[4:], uint32(index))
	binary.NativeEndian.PutUint32(h[8:], unix.IFF_UP)
	binary.NativeEndian.PutUint32(h[12:], unix.IFF_UP)
	m := newMsg(unix.RTM_NEWLINK, 0, h)
	if mtu > 0 {
		m.u32(unix.IFLA_MTU, uint32(mtu))
	}
	if txQueueLen > 0 {
		m.u32(unix.IFLA_TXQLEN, uint32(txQueueLen))
	}
	if err := n.do(m); err != nil {
		return fmt.Errorf("tun: set link %d up, mtu %d: %w", index, mtu, err)
	}
	return nil
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// AddAddr assigns p to link index.
func (n *Netlink) AddAddr(index int, p netip.Prefix) error {
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	h := []byte{family(p.Addr()), uint8(p.Bits()), 0, unix.RT_SCOPE_UNIVERSE, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(h[4:], uint32(index))
	m := newMsg(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, h)
	m.attr(unix.IFA_LOCAL, p.Addr().AsSlice())
	m.attr(unix.IFA_ADDRESS, p.Addr().AsSlice())
	if err := n.do(m); err != nil {
		return fmt.Errorf("tun: add address %v to link %d: %w", p, index, err)
	}
	return nil
}

// Route is a route through a link in a routing table.
type Route struct {
	Dst   netip.Prefix
	Index int        // output link
	Src   netip.Addr // preferred source; zero: the kernel chooses
	Table uint32     // 0: main
}

func (n *Netlink) route(typ, flags uint16, r Route) error {
	table := r.Table
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol,
	// scope, type, flags.
	h := []byte{family(r.Dst.Addr()), uint8(r.Dst.Bits()), 0, 0, unix.RT_TABLE_UNSPEC, unix.RTPROT_STATIC, unix.RT_SCOPE_LINK, unix.RTN_UNICAST, 0, 0, 0, 0}
	m := newMsg(typ, flags, h)
	m.u32(unix.RTA_TABLE, table)
	m.attr(unix.RTA_DST, r.Dst.Masked().Addr().AsSlice())
	m.u32(unix.RTA_OIF, uint32(r.Index))
	if r.Src.IsValid() {
		m.attr(unix.RTA_PREFSRC, r.Src.AsSlice())
	}
	return n.do(m)
}

// AddRoute adds r (replacing an equal route).
func (n *Netlink) AddRoute(r Route) error {
	if err := n.route(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, r); err != nil {
		return fmt.Errorf("tun: add route %v dev %d: %w", r.Dst, r.Index, err)
	}
	return nil
}

// DelRoute removes r.
func (n *Netlink) DelRoute(r Route) error {
	if err := n.route(unix.RTM_DELROUTE, 0, r); err != nil {
		return fmt.Errorf("tun: delete route %v dev %d: %w", r.Dst, r.Index, err)
	}
	return nil
}

// Rule is a policy routing rule: packets (without Mark, or with it when
// Invert is false and Mark is set) look up Table.
type Rule struct {
	Family   uint8 // unix.AF_INET or unix.AF_INET6
	Priority uint32
	Mark     uint32 // 0: match all packets
	Invert   bool   // match packets without Mark
	Table    uint32
}

func (n *Netlink) rule(typ, flags uint16, r Rule) error {
	// struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1,
	// res2, action, flags.
	h := []byte{r.Family, 0, 0, 0, unix.RT_TABLE_UNSPEC, 0, 0, unix.FR_ACT_TO_TBL, 0, 0, 0, 0}
	if r.Invert {
		binary.NativeEndian.PutUint32(h[8:], unix.FIB_RULE_INVERT)
	}
	m := newMsg(typ, flags, h)
	m.u32(unix.FRA_PRIORITY, r.Priority)
	m.u32(unix.FRA_TABLE, r.Table)
	if r.Mark != 0 {
		m.u32(unix.FRA_FWMARK, r.Mark)
		m.u32(unix.FRA_FWMASK, 0xffffffff)
	}
	return n.do(m)
}

// AddRule adds r.
func (n *Netlink) AddRule(r Rule) error {
	if err := n.rule(unix.RTM_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, r); err != nil {
		return fmt.Errorf("tun: add rule %d: %w", r.Priority, err)
	}
	return nil
}

// DelRule removes r.
func (n *Netlink) DelRule(r Rule) error {
	if err := n.rule(unix.RTM_DELRULE, 0, r); err != nil {
		return fmt.Errorf("tun: delete rule %d: %w", r.Priority, err)
	}
	return nil
}
