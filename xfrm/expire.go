package xfrm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ExpireListener receives the kernel's SA expiries (XFRMNLGRP_EXPIRE) of
// the network namespace of the thread that called ListenExpire.
type ExpireListener struct {
	f   *os.File
	buf []byte
}

// ListenExpire subscribes to the expiry multicast group.
func ListenExpire() (*ExpireListener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_XFRM)
	if err != nil {
		return nil, fmt.Errorf("xfrm: open netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (groupExpire - 1)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xfrm: join expire group: %w", err)
	}
	// A non-blocking descriptor in an os.File uses the runtime poller,
	// so that Close wakes a pending Read.
	return &ExpireListener{f: os.NewFile(uintptr(fd), "xfrm-expire"), buf: make([]byte, 1<<16)}, nil
}

// Next waits for the next expiry. Expiries lost because the socket's
// buffer overflowed make it return an error wrapping ENOBUFS; the
// listener stays usable. After Close it returns os.ErrClosed.
func (l *ExpireListener) Next() (Expire, error) {
	for {
		n, err := l.f.Read(l.buf)
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				return Expire{}, fmt.Errorf("xfrm: expiries lost: %w", unix.ENOBUFS)
			}
			return Expire{}, err
		}
		ms, err := parseMessages(l.buf[:n])
		if err != nil {
			return Expire{}, fmt.Errorf("xfrm: expire message: %w", err)
		}
		for _, m := range ms {
			if m.typ == msgExpire {
				// One datagram carries one expiry.
				e, err := parseExpire(m.data)
				if err != nil {
					return Expire{}, fmt.Errorf("xfrm: expire message: %w", err)
				}
				return e, nil
			}
		}
	}
}

// Close stops the listener; a pending Next returns.
func (l *ExpireListener) Close() error { return l.f.Close() }
