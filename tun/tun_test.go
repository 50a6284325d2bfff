package tun

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espy-dpi/espy/packet"
	"github.com/espy-dpi/espy/tun/netns"
)

// newNS creates a namespace with a random name, removed at cleanup.
func newNS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, /dev/net/tun)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun: %v", err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "espy-tun-" + hex.EncodeToString(b)
	if err := netns.Add(name); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Del(name); err != nil {
			t.Errorf("delete namespace: %v", err)
		}
	})
	return name
}

func TestDeviceAndNetlink(t *testing.T) {
	ns := newNS(t)
	var dev *Device
	var nl *Netlink
	var udp *net.UDPConn
	tunAddr := netip.MustParsePrefix("198.51.100.1/32")
	route := Route{Dst: netip.MustParsePrefix("203.0.113.0/24"), Src: tunAddr.Addr(), Table: 4242}
	rules := []Rule{
		{Family: unix.AF_INET, Priority: 4000, Mark: 0x4242, Table: unix.RT_TABLE_MAIN},
		{Family: unix.AF_INET, Priority: 4001, Table: 4242},
	}
	err := netns.Do(ns, func() error {
		var err error
		if dev, err = Create("espytest0"); err != nil {
			return err
		}
		if nl, err = OpenNetlink(); err != nil {
			return err
		}
		if err := nl.SetLink(dev.Index(), 1380, 2000); err != nil {
			return err
		}
		if err := nl.AddAddr(dev.Index(), tunAddr); err != nil {
			return err
		}
		route.Index = dev.Index()
		if err := nl.AddRoute(route); err != nil {
			return err
		}
		for _, r := range rules {
			if err := nl.AddRule(r); err != nil {
				return err
			}
		}
		udp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tunAddr.Addr(), 5000)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	defer nl.Close()
	defer udp.Close()
	if dev.Name() != "espytest0" {
		t.Fatalf("name %q", dev.Name())
	}
	ipOut := func(args ...string) string {
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Skipf("ip %v: %v %s", args, err, out)
		}
		return string(out)
	}
	for _, c := range []struct{ args, want string }{
		{"link show espytest0", "mtu 1380"},
		{"link show espytest0", "qlen 2000"},
		{"addr show espytest0", "inet 198.51.100.1/32"},
		{"route show table 4242", "203.0.113.0/24 dev espytest0 proto static scope link src 198.51.100.1"},
		{"rule show", "4000:\tfrom all fwmark 0x4242 lookup main"},
		{"rule show", "4001:\tfrom all lookup 4242"},
	} {
		if out := ipOut(strings.Fields(c.args)...); !strings.Contains(out, c.want) {
			t.Errorf("ip %s lacks %q:\n%s", c.args, c.want, out)
		}
	}

	// Outbound: a datagram to the routed prefix comes out of the device.
	if _, err := udp.WriteToUDPAddrPort([]byte("to the tunnel"), netip.MustParseAddrPort("203.0.113.7:9")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2000)
	for {
		dev.f.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := dev.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		p := buf[:n]
		if p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
			continue // IPv6 router solicitations and the like
		}
		if !strings.HasSuffix(string(p), "to the tunnel") || netip.AddrFrom4([4]byte(p[16:20])) != netip.MustParseAddr("203.0.113.7") {
			t.Fatalf("read %x", p)
		}
		break
	}

	// Inbound: a datagram written to the device reaches the socket.
	payload := []byte("from the tunnel")
	pkt := make([]byte, 28+len(payload))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	copy(pkt[12:], netip.MustParseAddr("203.0.113.7").AsSlice())
	copy(pkt[16:], tunAddr.Addr().AsSlice())
	binary.BigEndian.PutUint16(pkt[10:], ^packet.Fold(packet.Sum(pkt[:20], 0)))
	binary.BigEndian.PutUint16(pkt[20:], 9)
	binary.BigEndian.PutUint16(pkt[22:], 5000)
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload)
	if _, err := dev.Write(pkt); err != nil {
		t.Fatal(err)
	}
	udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := udp.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != string(payload) || from.Port() != 9 {
		t.Fatalf("read %q from %v: %v", buf[:n], from, err)
	}

	if err := nl.DelRoute(route); err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if err := nl.DelRule(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := nl.DelRoute(route); err == nil {
		t.Fatal("deleting a missing route succeeded")
	}
	if out := ipOut("rule", "show"); strings.Contains(out, "4242") {
		t.Errorf("rules left:\n%s", out)
	}
}

// TestCloseUnblocksRead checks that a reader blocked on the device returns
// when it is closed.
func TestCloseUnblocksRead(t *testing.T) {
	ns := newNS(t)
	var dev *Device
	if err := netns.Do(ns, func() (err error) { dev, err = Create(""); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := dev.Read(make([]byte, 1500))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	dev.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read after close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}
