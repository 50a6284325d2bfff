package tun

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Device is an open TUN device. Read and Write move one IP packet each
// and may be called concurrently; Close unblocks a pending Read.
type Device struct {
	f     *os.File
	name  string
	index int
}

// Create opens TUN device name (a kernel-chosen tunN when empty), which
// exists until Close. It does not bring the link up.
func Create(name string) (*Device, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tun: name %q longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tun: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: %w", err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: TUNSETIFF %q: %w", name, err)
	}
	// Non-blocking, so that os.File reads go through the runtime poller
	// and Close wakes a blocked reader.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: set non-blocking: %w", err)
	}
	d := &Device{f: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name()}
	if d.index, err = ifIndex(d.name); err != nil {
		d.f.Close()
		return nil, err
	}
	return d, nil
}

// ifIndex asks the kernel for the index of link name; SIOCGIFINDEX needs
// a socket, so a datagram socket in the calling thread's namespace (where
// the device was just created) is opened briefly.
func ifIndex(name string) (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("tun: socket: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("tun: %w", err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("tun: SIOCGIFINDEX %q: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Index returns the interface index.
func (d *Device) Index() int { return d.index }

// Read reads one IP packet into b.
func (d *Device) Read(b []byte) (int, error) { return d.f.Read(b) }

// Write writes IP packet b.
func (d *Device) Write(b []byte) (int, error) { return d.f.Write(b) }

// Close removes the device.
func (d *Device) Close() error { return d.f.Close() }
