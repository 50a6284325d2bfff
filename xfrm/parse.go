package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrTruncated is returned for a netlink message or attribute shorter
// than its header or the struct its type implies.
var ErrTruncated = errors.New("xfrm: truncated netlink message")

// nlMessage is one netlink message of a datagram; data is its body.
type nlMessage struct {
	typ   uint16
	flags uint16
	seq   uint32
	data  []byte
}

// parseMessages splits a datagram into its netlink messages.
func parseMessages(b []byte) ([]nlMessage, error) {
	var ms []nlMessage
	for len(b) > 0 {
		if len(b) < unix.SizeofNlMsghdr {
			return ms, fmt.Errorf("%w: %d bytes of header", ErrTruncated, len(b))
		}
		n := int(ne.Uint32(b))
		if n < unix.SizeofNlMsghdr || n > len(b) {
			return ms, fmt.Errorf("%w: length %d of %d", ErrTruncated, n, len(b))
		}
		ms = append(ms, nlMessage{typ: ne.Uint16(b[4:]), flags: ne.Uint16(b[6:]), seq: ne.Uint32(b[8:]), data: b[unix.SizeofNlMsghdr:n]})
		n = (n + 3) &^ 3
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	return ms, nil
}

// errorCode returns the error of an NLMSG_ERROR body: nil for an
// acknowledgement, the kernel's errno otherwise.
func errorCode(data []byte) error {
	if len(data) < 4 {
		return fmt.Errorf("%w: error message of %d bytes", ErrTruncated, len(data))
	}
	code := int32(ne.Uint32(data))
	if code == 0 {
		return nil
	}
	if code > 0 || code < -4095 {
		return fmt.Errorf("xfrm: netlink error code %d", code)
	}
	return syscall.Errno(-code)
}

// attrs calls f for each netlink attribute in b.
func attrs(b []byte, f func(typ uint16, data []byte) error) error {
	for len(b) > 0 {
		if len(b) < unix.SizeofNlAttr {
			return fmt.Errorf("%w: %d bytes of attribute header", ErrTruncated, len(b))
		}
		n := int(ne.Uint16(b))
		if n < unix.SizeofNlAttr || n > len(b) {
			return fmt.Errorf("%w: attribute length %d of %d", ErrTruncated, n, len(b))
		}
		// The top bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
		if err := f(ne.Uint16(b[2:])&0x3fff, b[unix.SizeofNlAttr:n]); err != nil {
			return err
		}
		n = (n + 3) &^ 3
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	return nil
}

// getAddr reads an xfrm_address_t of family fam.
func getAddr(b []byte, fam uint16) (netip.Addr, error) {
	switch fam {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(b[:16])), nil
	}
	return netip.Addr{}, fmt.Errorf("%w: family %d", ErrFamily, fam)
}

// algName reads the NUL-terminated name of an xfrm_algo*.
func algName(b []byte) (string, error) {
	if len(b) < algNameLen {
		return "", fmt.Errorf("%w: algorithm of %d bytes", ErrTruncated, len(b))
	}
	n := 0
	for n < algNameLen && b[n] != 0 {
		n++
	}
	return string(b[:n]), nil
}

// parseSA decodes the body of an XFRM_MSG_NEWSA message (a GETSA reply
// or a dump entry): struct xfrm_usersa_info and its attributes.
func parseSA(b []byte) (SAState, error) {
	var s SAState
	if len(b) < sizeUserSAInfo {
		return s, fmt.Errorf("%w: SA of %d bytes", ErrTruncated, len(b))
	}
	fam := ne.Uint16(b[saFamily:])
	var err error
	if s.Dst, err = getAddr(b[saID:], fam); err != nil {
		return s, err
	}
	if s.Src, err = getAddr(b[saSaddr:], fam); err != nil {
		return s, err
	}
	s.SPI = be.Uint32(b[saID+16:])
	s.Mode = Mode(b[saMode])
	s.ReqID = ne.Uint32(b[saReqID:])
	cur := b[saCurLft:]
	s.Bytes, s.Packets, s.AddTime, s.UseTime = ne.Uint64(cur), ne.Uint64(cur[8:]), ne.Uint64(cur[16:]), ne.Uint64(cur[24:])
	s.ReplayDrops = ne.Uint32(b[saStats+4:])
	s.IntegrityFailures = ne.Uint32(b[saStats+8:])
	err = attrs(b[sizeUserSAInfo:], func(typ uint16, d []byte) error {
		var err error
		switch typ {
		case attrAlgCrypt:
			s.Crypt, err = algName(d)
		case attrAlgAuth:
			// The kernel reports the untruncated form too; the
			// truncated one names the same algorithm.
			if s.Auth == "" {
				s.Auth, err = algName(d)
			}
		case attrAlgAuthTrunc:
			s.Auth, err = algName(d)
		case attrAlgAEAD:
			s.AEAD, err = algName(d)
		case attrEncap:
			if len(d) < sizeEncapTmpl {
				return fmt.Errorf("%w: encapsulation of %d bytes", ErrTruncated, len(d))
			}
			s.Encap = &Encap{SrcPort: be.Uint16(d[2:]), DstPort: be.Uint16(d[4:])}
		case attrLtimeVal:
			// The current lifetime again, as of the reply.
			if len(d) < sizeLifetimeCur {
				return fmt.Errorf("%w: lifetime of %d bytes", ErrTruncated, len(d))
			}
			s.Bytes, s.Packets = ne.Uint64(d), ne.Uint64(d[8:])
		}
		return err
	})
	return s, err
}

// parseExpire decodes the body of an XFRM_MSG_EXPIRE message.
func parseExpire(b []byte) (Expire, error) {
	if len(b) < sizeUserSAInfo+1 {
		return Expire{}, fmt.Errorf("%w: expire of %d bytes", ErrTruncated, len(b))
	}
	// struct xfrm_user_expire has no attributes of its own after it;
	// parse the SA part alone.
	s, err := parseSA(b[:sizeUserSAInfo])
	if err != nil {
		return Expire{}, err
	}
	return Expire{State: s, Hard: b[sizeUserSAInfo] != 0}, nil
}
