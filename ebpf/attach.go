package ebpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachMode is how the program is hooked into an interface.
type AttachMode int

// Attach modes.
const (
	// AttachAuto tries driver mode and falls back to generic mode.
	AttachAuto AttachMode = iota
	// AttachDriver runs in the driver's receive path (native XDP).
	AttachDriver
	// AttachGeneric runs on the skb after allocation; works on any device
	// but is slower.
	AttachGeneric
)

// String returns "auto", "driver" or "generic".
func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachDriver:
		return "driver"
	case AttachGeneric:
		return "generic"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// linkPinPrefix names link pins: xdp_<ifindex>_<mode>.
const linkPinPrefix = "xdp_"

// Attach attaches the program to an interface of the caller's network
// namespace and returns the mode it got. With a PinPath the link is pinned;
// if a link pinned by an earlier run is found for the interface, it is
// switched to this program atomically instead, so traffic is never
// unfiltered across a restart.
func (p *Program) Attach(ifindex int, mode AttachMode) (AttachMode, error) {
	// The thread must not change namespace between attaching and noting
	// the namespace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := currentNetns()
	if err != nil {
		return 0, fmt.Errorf("ebpf: attach ifindex %d: %w", ifindex, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	if _, ok := p.links[ifindex]; ok {
		return 0, fmt.Errorf("ebpf: attach ifindex %d: already attached", ifindex)
	}
	if p.pinPath != "" {
		got, err := p.adoptPinnedLink(ifindex)
		if err != nil || got != AttachAuto {
			if err == nil {
				p.linkNetns[p.links[ifindex]] = ns
			}
			return got, err
		}
	}

	var (
		l   link.Link
		got = mode
	)
	switch mode {
	case AttachAuto:
		got = AttachDriver
		l, err = link.AttachXDP(link.XDPOptions{Program: p.objs.EspyXdp, Interface: ifindex, Flags: link.XDPDriverMode})
		if err != nil {
			got = AttachGeneric
			var gerr error
			l, gerr = link.AttachXDP(link.XDPOptions{Program: p.objs.EspyXdp, Interface: ifindex, Flags: link.XDPGenericMode})
			if gerr != nil {
				err = fmt.Errorf("driver mode: %w; generic mode: %w", err, gerr)
			} else {
				err = nil
			}
		}
	case AttachDriver:
		l, err = link.AttachXDP(link.XDPOptions{Program: p.objs.EspyXdp, Interface: ifindex, Flags: link.XDPDriverMode})
	case AttachGeneric:
		l, err = link.AttachXDP(link.XDPOptions{Program: p.objs.EspyXdp, Interface: ifindex, Flags: link.XDPGenericMode})
	default:
		return 0, fmt.Errorf("ebpf: attach ifindex %d: unknown mode %d", ifindex, mode)
	}
	if err != nil {
		return 0, fmt.Errorf("ebpf: attach ifindex %d: %w", ifindex, err)
	}
	if p.pinPath != "" {
		if err := l.Pin(p.linkPin(ifindex, got)); err != nil {
			l.Close()
			return 0, fmt.Errorf("ebpf: attach ifindex %d: pin link: %w", ifindex, err)
		}
	}
	p.links[ifindex] = l
	p.linkNetns[l] = ns
	return got, nil
}

// adoptPinnedLink takes over a link pinned for ifindex by an earlier run. It
// returns AttachAuto when there is none.
func (p *Program) adoptPinnedLink(ifindex int) (AttachMode, error) {
	for _, m := range []AttachMode{AttachDriver, AttachGeneric} {
		path := p.linkPin(ifindex, m)
		l, err := link.LoadPinnedLink(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("ebpf: attach ifindex %d: load pinned link: %w", ifindex, err)
		}
		if err := l.Update(p.objs.EspyXdp); err != nil {
			l.Close()
			return 0, fmt.Errorf("ebpf: attach ifindex %d: update pinned link: %w", ifindex, err)
		}
		p.links[ifindex] = l
		return m, nil
	}
	return AttachAuto, nil
}

func (p *Program) linkPin(ifindex int, m AttachMode) string {
	return filepath.Join(p.pinPath, linkPinPrefix+strconv.Itoa(ifindex)+"_"+m.String())
}

// Detach removes the program from an interface and deletes the link's pin.
func (p *Program) Detach(ifindex int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.links[ifindex]
	if !ok {
		return fmt.Errorf("ebpf: detach ifindex %d: %w", ifindex, ErrNotFound)
	}
	delete(p.links, ifindex)
	delete(p.linkNetns, l)
	var errs []error
	if p.pinPath != "" {
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("ebpf: detach ifindex %d: unpin: %w", ifindex, err))
		}
	}
	if err := l.Close(); err != nil {
		errs = append(errs, fmt.Errorf("ebpf: detach ifindex %d: %w", ifindex, err))
	}
	return errors.Join(errs...)
}

// SetBridgePort makes frames that pass on ingress leave through egress when
// Config.Bridge is set; both directions need an entry. Both interfaces must
// be attached by p, and the caller must be in their network namespace: the
// kernel resolves the ifindexes where the caller is, and an index from
// another namespace would send frames out of an unrelated device.
func (p *Program) SetBridgePort(ingress, egress int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := currentNetns()
	if err != nil {
		return fmt.Errorf("ebpf: bridge %d -> %d: %w", ingress, egress, err)
	}
	p.mu.Lock()
	for _, ifindex := range []int{ingress, egress} {
		l, ok := p.links[ifindex]
		if !ok {
			p.mu.Unlock()
			return fmt.Errorf("ebpf: bridge %d -> %d: ifindex %d not attached: %w", ingress, egress, ifindex, ErrNotFound)
		}
		if p.linkNetns[l] != ns {
			p.mu.Unlock()
			return fmt.Errorf("ebpf: bridge %d -> %d: %w", ingress, egress, ErrWrongNetns)
		}
	}
	p.mu.Unlock()
	return p.putBridgePort(ingress, egress)
}

func (p *Program) putBridgePort(ingress, egress int) error {
	if err := p.objs.BridgePorts.Put(uint32(ingress), uint32(egress)); err != nil {
		return fmt.Errorf("ebpf: bridge %d -> %d: %w", ingress, egress, err)
	}
	return nil
}

// currentNetns identifies the calling thread's network namespace.
func currentNetns() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("network namespace: %w", err)
	}
	return st.Ino, nil
}

// DeleteBridgePort removes the egress port of ingress; passing frames then
// go to the local stack.
func (p *Program) DeleteBridgePort(ingress int) error {
	if err := p.objs.BridgePorts.Delete(uint32(ingress)); err != nil {
		return fmt.Errorf("ebpf: delete bridge port %d: %w", ingress, err)
	}
	return nil
}
