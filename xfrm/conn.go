package xfrm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound is returned (wrapped) when the kernel has no such SA or
// policy (ESRCH, ENOENT).
var ErrNotFound = errors.New("xfrm: not found")

// ErrExists is returned (wrapped) when the kernel already has the SA or
// policy (EEXIST).
var ErrExists = errors.New("xfrm: already exists")

// replyTimeout bounds the wait for the kernel's answer; netlink requests
// are answered synchronously, so hitting it means something is broken.
const replyTimeout = 5 * time.Second

// Conn is a NETLINK_XFRM socket for requests, in the network namespace
// of the thread that called Dial. It is safe for concurrent use.
type Conn struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

// Dial opens a NETLINK_XFRM socket. It fails with EPROTONOSUPPORT when
// the kernel lacks xfrm_user (CONFIG_XFRM_USER).
func Dial() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_XFRM)
	if err != nil {
		return nil, fmt.Errorf("xfrm: open netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(replyTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xfrm: netlink socket timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xfrm: bind netlink socket: %w", err)
	}
	// Replies carrying a whole SA with keys fit in a page; dumps are
	// not used.
	return &Conn{fd: fd, buf: make([]byte, 1<<16)}, nil
}

// Close closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// kernelError maps the kernel's errno to the sentinel errors callers
// branch on, keeping the errno in the chain.
func kernelError(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case unix.ESRCH, unix.ENOENT:
		return fmt.Errorf("%w (%w)", ErrNotFound, errno)
	case unix.EEXIST:
		return fmt.Errorf("%w (%w)", ErrExists, errno)
	}
	return err
}

// do sends a request and waits for its answer: the messages of type
// want (returned) and the final acknowledgement or error.
func (c *Conn) do(typ uint16, flags uint16, body []byte, want uint16) ([]nlMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil, os.ErrClosed
	}
	c.seq++
	seq := c.seq
	if err := unix.Sendto(c.fd, request(typ, flags|unix.NLM_F_ACK, seq, body), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var got []nlMessage
	for {
		n, from, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return nil, fmt.Errorf("no answer in %v: %w", replyTimeout, os.ErrDeadlineExceeded)
			}
			return nil, err
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		ms, err := parseMessages(c.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.seq != seq {
				continue // a late answer to an earlier, timed-out request
			}
			switch m.typ {
			case unix.NLMSG_ERROR:
				if err := errorCode(m.data); err != nil {
					return nil, kernelError(err)
				}
				return got, nil
			case unix.NLMSG_DONE:
				return got, nil
			case want:
				// The data is only valid until the next read.
				m.data = append([]byte(nil), m.data...)
				got = append(got, m)
			}
		}
	}
}

// AddSA adds an SA (XFRM_MSG_NEWSA).
func (c *Conn) AddSA(sa *SA) error {
	body, err := encodeNewSA(sa)
	if err != nil {
		return fmt.Errorf("xfrm: add SA %#x: %w", sa.SPI, err)
	}
	if _, err := c.do(msgNewSA, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body, 0); err != nil {
		return fmt.Errorf("xfrm: add SA %#x to %v: %w", sa.SPI, sa.Dst, err)
	}
	return nil
}

// DeleteSA deletes an SA (XFRM_MSG_DELSA).
func (c *Conn) DeleteSA(id SAID) error {
	body, err := encodeSAID(id)
	if err == nil {
		_, err = c.do(msgDelSA, 0, body, 0)
	}
	if err != nil {
		return fmt.Errorf("xfrm: delete SA %#x to %v: %w", id.SPI, id.Dst, err)
	}
	return nil
}

// GetSA returns the kernel's state of an SA, with its counters
// (XFRM_MSG_GETSA).
func (c *Conn) GetSA(id SAID) (SAState, error) {
	body, err := encodeSAID(id)
	var ms []nlMessage
	if err == nil {
		ms, err = c.do(msgGetSA, 0, body, msgNewSA)
	}
	if err == nil && len(ms) == 0 {
		err = fmt.Errorf("%w: no SA in the answer", ErrTruncated)
	}
	var s SAState
	if err == nil {
		s, err = parseSA(ms[0].data)
	}
	if err != nil {
		return s, fmt.Errorf("xfrm: get SA %#x to %v: %w", id.SPI, id.Dst, err)
	}
	return s, nil
}

// AddPolicy adds a policy (XFRM_MSG_NEWPOLICY); with update it replaces
// one with the same selector and direction (XFRM_MSG_UPDPOLICY).
func (c *Conn) AddPolicy(p *Policy, update bool) error {
	body, err := encodeNewPolicy(p)
	if err == nil {
		typ, flags := uint16(msgNewPolicy), uint16(unix.NLM_F_CREATE|unix.NLM_F_EXCL)
		if update {
			typ, flags = msgUpdPolicy, unix.NLM_F_CREATE
		}
		_, err = c.do(typ, flags, body, 0)
	}
	if err != nil {
		return fmt.Errorf("xfrm: add policy %v %v: %w", p.Dir, p.Selector, err)
	}
	return nil
}

// DeletePolicy deletes the policy with p's selector and direction
// (XFRM_MSG_DELPOLICY).
func (c *Conn) DeletePolicy(p *Policy) error {
	body, err := encodePolicyID(p)
	if err == nil {
		_, err = c.do(msgDelPolicy, 0, body, 0)
	}
	if err != nil {
		return fmt.Errorf("xfrm: delete policy %v %v: %w", p.Dir, p.Selector, err)
	}
	return nil
}

// HasPolicy reports whether the kernel has a policy with p's selector
// and direction (XFRM_MSG_GETPOLICY).
func (c *Conn) HasPolicy(p *Policy) (bool, error) {
	body, err := encodePolicyID(p)
	if err == nil {
		_, err = c.do(msgGetPolicy, 0, body, msgNewPolicy)
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("xfrm: get policy %v %v: %w", p.Dir, p.Selector, err)
	}
	return true, nil
}
