package esptun

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/tun/netns"
)

const labPSK = "sswlab-test-psk-not-a-secret"

var (
	addrA  = netip.MustParseAddr("192.0.2.1")
	addrB  = netip.MustParseAddr("192.0.2.2")
	innerA = netip.MustParseAddr("198.51.100.1")
	innerB = netip.MustParseAddr("203.0.113.1")
)

func testLogger() *slog.Logger {
	if os.Getenv("ESPTUN_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lab is two network namespaces joined by a veth pair, 192.0.2.1 (a) and
// 192.0.2.2 (b), created for one test and removed after it.
type lab struct {
	a, b string
	tag  string
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLab(t testing.TB) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN, raw sockets)")
	}
	for _, bin := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (Debian: iproute2 iputils-ping): %v", bin, err)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun: %v", err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{tag: hex.EncodeToString(b)}
	l.a, l.b = "espy-esptun-a-"+l.tag, "espy-esptun-b-"+l.tag
	for _, ns := range []string{l.a, l.b} {
		if err := netns.Add(ns); err != nil {
			t.Skipf("cannot create network namespaces: %v", err)
		}
		t.Cleanup(func() {
			if err := netns.Del(ns); err != nil {
				t.Errorf("delete namespace %s: %v", ns, err)
			}
		})
	}
	va, vb := "eeta"+l.tag, "eetb"+l.tag
	run(t, "ip", "link", "add", va, "netns", l.a, "type", "veth", "peer", "name", vb, "netns", l.b)
	for _, c := range []struct{ ns, dev, addr string }{{l.a, va, "192.0.2.1/24"}, {l.b, vb, "192.0.2.2/24"}} {
		run(t, "ip", "-n", c.ns, "addr", "add", c.addr, "dev", c.dev)
		run(t, "ip", "-n", c.ns, "link", "set", c.dev, "up")
	}
	return l
}

// node is espy in one namespace: an IKE endpoint and the data plane.
type node struct {
	ep *ike.Endpoint
	dp *DataPlane
}

// start opens espy's sockets and data plane inside namespace ns.
func start(t testing.TB, ns string, addr netip.Addr, tunAddrs ...netip.Prefix) *node {
	t.Helper()
	n := &node{}
	err := netns.Do(ns, func() error {
		ikeC, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, ike.DefaultPort)))
		if err != nil {
			return err
		}
		nattC, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, ike.DefaultNATPort)))
		if err != nil {
			ikeC.Close()
			return err
		}
		n.ep = ike.NewEndpoint(ikeC, nattC, ike.ListenConfig{Logger: testLogger()})
		n.dp, err = Open(Config{Name: "espy0", Addrs: tunAddrs, Endpoint: n.ep, Logger: testLogger()})
		return err
	})
	if n.ep != nil {
		t.Cleanup(func() { n.ep.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.dp.Close(); err != nil {
			t.Errorf("close data plane: %v", err)
		}
	})
	return n
}

// ping sends count echo requests from namespace ns to dst and fails the
// test unless all are answered; the data planes' counters are logged then.
func ping(t testing.TB, ns string, dst netip.Addr, count int, dps ...*DataPlane) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", dst.String()).CombinedOutput()
	if err == nil && strings.Contains(string(out), fmt.Sprintf("%d received", count)) {
		return
	}
	for _, dp := range dps {
		t.Logf("%s: %+v", dp.Name(), dp.Status())
	}
	t.Fatalf("ping %v from %s: %v\n%s", dst, ns, err, out)
}

// tcpBothWays listens in namespace srv on srvAddr, connects from
// namespace cli and copies size random bytes each way at once, checking
// what arrives.
func tcpBothWays(t testing.TB, cli, srv string, srvAddr netip.Addr, size int) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(srv, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(srvAddr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	type res struct {
		got []byte
		err error
	}
	srvRes := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvRes <- res{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		wrote := make(chan error, 1)
		go func() {
			_, err := c.Write(down)
			c.(*net.TCPConn).CloseWrite()
			wrote <- err
		}()
		got, err := io.ReadAll(c)
		// Closing before the write is done would cut the download short.
		if werr := <-wrote; err == nil {
			err = werr
		}
		srvRes <- res{got, err}
	}()
	var c net.Conn
	if err := netns.Do(cli, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	wErr := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		c.(*net.TCPConn).CloseWrite()
		wErr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-wErr; err != nil {
		t.Fatalf("client write: %v", err)
	}
	r := <-srvRes
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	if !bytes.Equal(got, down) || !bytes.Equal(r.got, up) {
		t.Fatalf("TCP data differs: got %d/%d bytes, sha256 %x/%x", len(got), len(r.got), sha256.Sum256(got), sha256.Sum256(r.got))
	}
}

// checkCounters fails unless every SA of dp carried traffic and no packet
// failed authentication or replay checks, and no packet was dropped since
// status before. NoSA and UnknownSPI are not checked: the device's own
// IPv6 router and listener solicitations match no SA, and ESP of an SA
// being deleted can still be queued when the peer has removed it.
func checkCounters(t testing.TB, who string, dp *DataPlane, before Status) {
	t.Helper()
	st := dp.Status()
	if len(st.SAs) < 2 {
		t.Fatalf("%s: %d SAs installed", who, len(st.SAs))
	}
	for _, s := range st.SAs {
		if s.Counters.Packets == 0 {
			t.Errorf("%s: SA %08x inbound=%v carried nothing", who, s.SPI, s.Inbound)
		}
		if s.Counters.AuthFailures != 0 || s.Counters.ReplayDrops != 0 || s.Counters.OtherDrops != 0 {
			t.Errorf("%s: SA %08x inbound=%v: %+v", who, s.SPI, s.Inbound, s.Counters)
		}
	}
	if st.SelectorDrops != before.SelectorDrops || st.SendErrors != before.SendErrors || st.TunWriteErrors != before.TunWriteErrors {
		t.Errorf("%s: status %+v", who, st)
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}
