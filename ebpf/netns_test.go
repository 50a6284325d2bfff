package ebpf

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// netns is a network namespace created by the test with ip netns.
type netns struct {
	name string
}

func requireIP(t *testing.T) {
	t.Helper()
	requireBPF(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip to create network namespaces")
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a namespace that is deleted when the test ends.
func newNetns(t *testing.T, role string) netns {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := netns{name: "espy-" + role + "-" + hex.EncodeToString(b)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v: %s", n.name, err, out)
		}
	})
	return n
}

// do runs f on a thread switched into the namespace.
func (n netns) do(t *testing.T, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + n.name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", n.name, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime then retires it
			// instead of reusing it in the wrong namespace.
			runtime.LockOSThread()
			t.Errorf("setns back: %v", err)
		}
	}()
	f()
}

func (n netns) iface(t *testing.T, name string) *net.Interface {
	t.Helper()
	var ifi *net.Interface
	n.do(t, func() {
		var err error
		if ifi, err = net.InterfaceByName(name); err != nil {
			t.Fatalf("%s in %s: %v", name, n.name, err)
		}
	})
	return ifi
}

// packetSocket opens an AF_PACKET socket bound to ifi inside n.
func (n netns) packetSocket(t *testing.T, ifi *net.Interface) int {
	t.Helper()
	var fd int
	n.do(t, func() {
		var err error
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			t.Fatalf("packet socket: %v", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			t.Fatalf("bind packet socket: %v", err)
		}
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestBridgeNetns builds A <-> E <-> B with veth pairs, runs espy in E in
// bridge mode on both of E's ports, and sends ESP-NULL frames from A to B:
// those whose inner 5-tuple has a drop rule must not reach B, the others
// must.
func TestBridgeNetns(t *testing.T) {
	for _, mode := range []AttachMode{AttachGeneric, AttachDriver} {
		t.Run(mode.String(), func(t *testing.T) { testBridge(t, mode) })
	}
}

// passProgram returns an XDP program that passes everything. A veth only
// takes native XDP redirects when its peer runs XDP itself (or has GRO on).
func passProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load pass program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

func testBridge(t *testing.T, mode AttachMode) {
	requireIP(t)
	a, e, b := newNetns(t, "a"), newNetns(t, "e"), newNetns(t, "b")
	ipCmd(t, "link", "add", "a0", "netns", a.name, "type", "veth", "peer", "name", "e0", "netns", e.name)
	ipCmd(t, "link", "add", "b0", "netns", b.name, "type", "veth", "peer", "name", "e1", "netns", e.name)
	ipCmd(t, "-n", a.name, "addr", "add", "192.0.2.1/24", "dev", "a0")
	ipCmd(t, "-n", b.name, "addr", "add", "192.0.2.2/24", "dev", "b0")
	for _, x := range []struct{ ns, dev string }{{a.name, "a0"}, {b.name, "b0"}, {e.name, "e0"}, {e.name, "e1"}} {
		ipCmd(t, "-n", x.ns, "link", "set", x.dev, "up")
	}
	a0, b0 := a.iface(t, "a0"), b.iface(t, "b0")
	e0, e1 := e.iface(t, "e0"), e.iface(t, "e1")
	if mode == AttachDriver {
		pass := passProgram(t)
		for _, x := range []struct {
			ns  netns
			ifi *net.Interface
		}{{a, a0}, {b, b0}} {
			x.ns.do(t, func() {
				l, err := link.AttachXDP(link.XDPOptions{Program: pass, Interface: x.ifi.Index, Flags: link.XDPDriverMode})
				if err != nil {
					t.Fatalf("attach pass program to %s: %v", x.ifi.Name, err)
				}
				t.Cleanup(func() { l.Close() })
			})
		}
	}

	var p *Program
	e.do(t, func() {
		p = loadTest(t, smallMaps(Config{Bridge: true}))
		if err := p.SetBridgePort(e0.Index, e1.Index); !errors.Is(err, ErrNotFound) {
			t.Fatalf("bridge port before attach: %v, want ErrNotFound", err)
		}
		for _, ifi := range []*net.Interface{e0, e1} {
			if got, err := p.Attach(ifi.Index, mode); err != nil || got != mode {
				t.Fatalf("attach to %s: %v, %v", ifi.Name, got, err)
			}
		}
		// The devmap resolves ifindexes in the caller's namespace: set
		// the ports from inside E, or frames leave through whatever
		// device has that index where the caller is.
		if err := p.SetBridgePort(e0.Index, e1.Index); err != nil {
			t.Fatal(err)
		}
		if err := p.SetBridgePort(e1.Index, e0.Index); err != nil {
			t.Fatal(err)
		}
	})
	if err := p.SetBridgePort(e0.Index, e1.Index); !errors.Is(err, ErrWrongNetns) {
		t.Fatalf("bridge port from outside E: %v, want ErrWrongNetns", err)
	}
	const spi = 0x7007
	k, err := NewFlowKey(netipMust("192.0.2.1"), netipMust("192.0.2.2"), spi, EncapNone, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustVerdict(t, p, k, nullV)
	mustRule(t, p, inner(t, 17, innerSrc4, innerDst4, 1000, 53), ActionDrop)

	tx := a.packetSocket(t, a0)
	rx := b.packetSocket(t, b0)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	frame := func(seq uint32, dport uint16) []byte {
		f := cat(b0.HardwareAddr, a0.HardwareAddr, []byte{0x08, 0x00},
			ipv4(50, netipMust("192.0.2.1"), netipMust("192.0.2.2"), espNull(spi, seq, 0, innerUDP4(1000, dport), 4, 12), ip4opts{}))
		return f
	}
	const each = 5
	sent := map[uint32]bool{} // seq -> allowed
	for i := range 2 * each {
		seq := uint32(i + 1)
		dport := uint16(54) // allowed
		if i%2 == 1 {
			dport = 53 // dropped
		}
		sent[seq] = dport == 54
		if err := unix.Sendto(tx, frame(seq, dport), 0, &unix.SockaddrLinklayer{Ifindex: a0.Index, Halen: 6}); err != nil {
			t.Fatalf("send: %v", err)
		}
	}

	got := map[uint32]bool{}
	buf := make([]byte, 4096)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(got) < each {
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil {
			continue // timeout: try again until the deadline
		}
		f := buf[:n]
		if n < 42 || !bytes.Equal(f[12:14], []byte{0x08, 0x00}) || f[23] != 50 || binary.BigEndian.Uint32(f[34:]) != spi {
			continue // IPv6 router solicitations and the like
		}
		got[binary.BigEndian.Uint32(f[38:])] = true
	}
	for seq, allowed := range sent {
		if allowed && !got[seq] {
			t.Errorf("allowed ESP-NULL frame seq %d did not reach B", seq)
		}
		if !allowed && got[seq] {
			t.Errorf("ESP-NULL frame seq %d with a drop rule reached B", seq)
		}
	}
	c, err := p.ExitCounters()
	if err != nil {
		t.Fatal(err)
	}
	if c[ExitNullDrop] != each || c[ExitNullAllow] != each {
		t.Errorf("exit counters: null-drop %d, null-allow %d; want %d each", c[ExitNullDrop], c[ExitNullAllow], each)
	}
	if st, err := p.FlowCounters(k); err != nil || st.Packets != 2*each {
		t.Errorf("flow counters: %+v, %v", st, err)
	}
	t.Logf("B received %d of %d allowed frames", len(got), each)
}

// TestPinnedLinkSurvivesRestart attaches with a pin path, closes the
// Program (XDP stays attached through the pinned link), loads again and
// checks that Attach adopts the pinned link instead of failing on a busy
// interface.
func TestPinnedLinkSurvivesRestart(t *testing.T) {
	requireIP(t)
	dir := tempPinDir(t)
	x := newNetns(t, "x")
	ipCmd(t, "link", "add", "x0", "netns", x.name, "type", "veth", "peer", "name", "x1", "netns", x.name)
	ipCmd(t, "-n", x.name, "link", "set", "x0", "up")
	ipCmd(t, "-n", x.name, "link", "set", "x1", "up")
	x0 := x.iface(t, "x0")
	hasXDP := func() bool {
		out, err := exec.Command("ip", "-n", x.name, "link", "show", "x0").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link show: %v: %s", err, out)
		}
		return strings.Contains(string(out), "prog/xdp")
	}
	cfg := smallMaps(Config{PinPath: dir})
	x.do(t, func() {
		p1, err := Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if mode, err := p1.Attach(x0.Index, AttachGeneric); err != nil || mode != AttachGeneric {
			t.Fatalf("attach: %v, %v", mode, err)
		}
		if err := p1.Close(); err != nil {
			t.Fatal(err)
		}
		if !hasXDP() {
			t.Fatal("XDP detached when the Program closed despite the pinned link")
		}

		p2 := loadTest(t, cfg)
		mode, err := p2.Attach(x0.Index, AttachAuto)
		if err != nil || mode != AttachGeneric {
			t.Fatalf("attach after restart: %v, %v; want the pinned generic link", mode, err)
		}
		if err := p2.Detach(x0.Index); err != nil {
			t.Fatal(err)
		}
		if hasXDP() {
			t.Fatal("XDP still attached after Detach")
		}
		if err := p2.Unpin(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAttachAutoFallsBack attaches in auto mode to a veth (native XDP) and to
// the namespace's loopback device (no native XDP: generic fallback).
func TestAttachAutoFallsBack(t *testing.T) {
	requireIP(t)
	x := newNetns(t, "m")
	ipCmd(t, "link", "add", "v0", "netns", x.name, "type", "veth", "peer", "name", "v1", "netns", x.name)
	for _, dev := range []string{"v0", "v1", "lo"} {
		ipCmd(t, "-n", x.name, "link", "set", dev, "up")
	}
	v0, d0 := x.iface(t, "v0"), x.iface(t, "lo")
	x.do(t, func() {
		p := loadTest(t, smallMaps(Config{}))
		for _, c := range []struct {
			ifi  *net.Interface
			want AttachMode
		}{{v0, AttachDriver}, {d0, AttachGeneric}} {
			got, err := p.Attach(c.ifi.Index, AttachAuto)
			if err != nil || got != c.want {
				t.Errorf("%s: attached in %v mode (%v), want %v", c.ifi.Name, got, err, c.want)
			}
		}
		if _, err := p.Attach(v0.Index, AttachAuto); err == nil {
			t.Error("second attach to the same interface succeeded")
		}
		if err := p.Detach(d0.Index); err != nil {
			t.Error(err)
		}
		if err := p.Detach(d0.Index); !errors.Is(err, ErrNotFound) {
			t.Errorf("second detach: %v, want ErrNotFound", err)
		}
	})
}
