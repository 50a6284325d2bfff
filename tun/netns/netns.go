// Package netns creates named network namespaces (as ip netns does, under
// /run/netns) and runs code inside them, for tests and tools that set up
// a data plane in a namespace of their own.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

const dir = "/run/netns"

// Path returns the bind-mount path of namespace name.
func Path(name string) string { return filepath.Join(dir, name) }

// Do runs f on a thread switched into namespace name. Sockets, TUN devices
// and netlink sockets f creates stay in that namespace.
func Do(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// If switching back fails the thread stays locked and exits
		// with the goroutine, so no other goroutine inherits it.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer orig.Close()
		ns, err := os.Open(Path(name))
		if err != nil {
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: enter %s: %w", name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: back to the original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Add creates namespace name with its loopback up, as ip netns add and
// ip link set lo up do.
func Add(name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	p := Path(name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread that unshared is never given back to the runtime.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: unshare: %w", err)
			return
		}
		if err := unix.Mount("/proc/thread-self/ns/net", p, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("netns: bind mount %s: %w", p, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(p)
		return err
	}
	return Do(name, func() error {
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return err
		}
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netns: %w", err)
		}
		defer unix.Close(s)
		ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
		if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("netns: lo up: %w", err)
		}
		return nil
	})
}

// Del removes namespace name; it disappears once no process or socket
// uses it.
func Del(name string) error {
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("netns: unmount %s: %w", p, err)
	}
	return os.Remove(p)
}
