package xfrm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/espy-dpi/espy/tun/netns"
)

// inNetns runs f in a new network namespace, deleted on cleanup; it
// skips without root or XFRM.
func inNetns(t *testing.T, f func(ns string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace, XFRM netlink)")
	}
	tag := make([]byte, 3)
	rand.Read(tag)
	ns := "espy-xfrm-" + hex.EncodeToString(tag)
	if err := netns.Add(ns); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Del(ns); err != nil {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	f(ns)
}

// TestKernelPolicies adds, finds and deletes policies in the running
// kernel (any kernel with XFRM, ESP not needed), checked with ip xfrm.
func TestKernelPolicies(t *testing.T) {
	inNetns(t, func(ns string) {
		var c *Conn
		if err := netns.Do(ns, func() (err error) { c, err = Dial(); return err }); err != nil {
			if errors.Is(err, syscall.EPROTONOSUPPORT) {
				t.Skipf("kernel without xfrm_user: %v", err)
			}
			t.Fatal(err)
		}
		defer c.Close()
		ps := []Policy{
			{Selector: Selector{Src: netip.MustParsePrefix("198.51.100.0/24"), Dst: netip.MustParsePrefix("203.0.113.7/32"), Proto: 6, DstPort: Port{443, 0xffff}},
				Dir: Out, Priority: 1000, Tmpl: Template{Src: a1, Dst: a2, Mode: Tunnel, ReqID: 5}},
			{Selector: Selector{Src: netip.PrefixFrom(v2, 128), Dst: netip.PrefixFrom(v1, 128)}, Dir: In, Priority: 1001, Tmpl: Template{Src: v2, Dst: v1, Mode: Transport, ReqID: 6}},
			{Selector: Selector{Src: netip.MustParsePrefix("2001:db8:1::/48"), Dst: netip.MustParsePrefix("2001:db8:2::/48")}, Dir: Fwd, Priority: 1002, Tmpl: Template{Src: a2, Dst: a1, Mode: Tunnel, ReqID: 7}},
		}
		for i := range ps {
			if err := c.AddPolicy(&ps[i], false); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.AddPolicy(&ps[0], false); !errors.Is(err, ErrExists) {
			t.Errorf("second add: %v, want ErrExists", err)
		}
		out, err := exec.Command("ip", "-n", ns, "xfrm", "policy").CombinedOutput()
		if err != nil {
			t.Skipf("ip xfrm policy: %v %s", err, out)
		}
		for _, want := range []string{
			"src 198.51.100.0/24 dst 203.0.113.7/32 proto tcp dport 443", "dir out priority 1000", "tmpl src 192.0.2.1 dst 192.0.2.2", "reqid 5 mode tunnel",
			"src 2001:db8::2/128 dst 2001:db8::1/128", "dir in priority 1001", "reqid 6 mode transport",
			"src 2001:db8:1::/48 dst 2001:db8:2::/48", "dir fwd priority 1002", "tmpl src 192.0.2.2 dst 192.0.2.1",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("ip xfrm policy lacks %q:\n%s", want, out)
			}
		}
		for i := range ps {
			if ok, err := c.HasPolicy(&ps[i]); !ok || err != nil {
				t.Errorf("policy %d: found %v, %v", i, ok, err)
			}
			if err := c.DeletePolicy(&ps[i]); err != nil {
				t.Error(err)
			}
			if ok, err := c.HasPolicy(&ps[i]); ok || err != nil {
				t.Errorf("policy %d after delete: found %v, %v", i, ok, err)
			}
		}
		if err := c.DeletePolicy(&ps[0]); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}
		if out, _ := exec.Command("ip", "-n", ns, "xfrm", "policy").CombinedOutput(); len(strings.TrimSpace(string(out))) != 0 {
			t.Errorf("policies left:\n%s", out)
		}
	})
}

// TestKernelSA adds an SA: where the kernel has ESP it must work and be
// readable with its counters; where it has not, the kernel's error must
// come back wrapped with context.
func TestKernelSA(t *testing.T) {
	inNetns(t, func(ns string) {
		var c *Conn
		if err := netns.Do(ns, func() (err error) { c, err = Dial(); return err }); err != nil {
			t.Skipf("no XFRM netlink: %v", err)
		}
		defer c.Close()
		sa := &SA{Src: a1, Dst: a2, SPI: 0xc1c2c3c4, Mode: Transport, ReqID: 1, Crypt: &Algorithm{Name: "ecb(cipher_null)"},
			Auth: &Algorithm{Name: "hmac(sha256)", Key: key(32), Bits: 128}, ReplayWindow: 128}
		err := c.AddSA(sa)
		if err != nil {
			if !strings.Contains(err.Error(), "xfrm: add SA 0xc1c2c3c4 to 192.0.2.2") {
				t.Errorf("error without context: %v", err)
			}
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				t.Errorf("error without the kernel's errno: %v", err)
			}
			if _, serr := os.Stat("/sys/module/esp4"); serr == nil {
				t.Fatalf("kernel has esp4, add SA: %v", err)
			}
			t.Skipf("kernel without ESP refused the SA as expected (%v); the UML tests cover SAs", err)
		}
		s, err := c.GetSA(SAID{Dst: a2, SPI: sa.SPI})
		if err != nil || s.Auth != "hmac(sha256)" || s.Crypt != "ecb(cipher_null)" || s.Src != a1 || s.Mode != Transport || s.ReqID != 1 {
			t.Errorf("get SA: %+v, %v", s, err)
		}
		if err := c.DeleteSA(SAID{Dst: a2, SPI: sa.SPI}); err != nil {
			t.Error(err)
		}
		if _, err := c.GetSA(SAID{Dst: a2, SPI: sa.SPI}); !errors.Is(err, ErrNotFound) {
			t.Errorf("get deleted SA: %v", err)
		}
	})
}

// TestSocketOptions sets the IKE socket options on real sockets.
func TestSocketOptions(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		if err != nil {
			t.Skipf("%s: %v", addr, err)
		}
		rc, _ := c.SyscallConn()
		var ferr error
		rc.Control(func(fd uintptr) {
			if ferr = BypassSocket(fd); ferr == nil {
				ferr = EncapSocket(fd)
			}
		})
		c.Close()
		if ferr != nil {
			if errors.Is(ferr, syscall.EPERM) {
				t.Skipf("needs CAP_NET_ADMIN: %v", ferr)
			}
			t.Errorf("%s: %v", addr, ferr)
		}
	}
}
