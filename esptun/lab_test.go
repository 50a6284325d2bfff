package esptun

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/internal/charonlab"
	"github.com/espy-dpi/espy/tun/netns"
)

const labPSK = charonlab.PSK

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

// lab is charonlab's two network namespaces joined by a veth pair,
// 192.0.2.1 (a) and 192.0.2.2 (b), created for one test and removed after
// it.
type lab struct {
	*charonlab.Lab
	a, b string
	tag  string
}

// run runs a command and fails the test if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return charonlab.Run(t, name, args...)
}

func newLab(t testing.TB) *lab {
	t.Helper()
	l := charonlab.New(t, charonlab.Options{Name: "esptun", Dev: "eet", TUN: true, Needs: []string{"ping"}})
	return &lab{Lab: l, a: l.A, b: l.B, tag: l.Tag}
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
// test unless each of them (icmp_seq 1 to count) is answered; the data
// planes' counters are logged then. It waits for the answers up to a
// deadline (-w): with -W alone, once one answer has come, ping waits only
// twice the round trip for the rest, and on a loaded machine a second
// answer 40 ms after a 20 ms one was counted lost although espy had sent
// it. With -w ping may send more than count requests while waiting;
// answers to those do not stand in for a lost one.
func ping(t testing.TB, ns string, dst netip.Addr, count int, dps ...*DataPlane) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", fmt.Sprint(count), "-i", "0.2", "-w", "10", dst.String()).CombinedOutput()
	answered := true
	for seq := 1; seq <= count; seq++ {
		answered = answered && strings.Contains(string(out), fmt.Sprintf(" icmp_seq=%d ttl=", seq))
	}
	if answered {
		return
	}
	for _, dp := range dps {
		t.Logf("%s: %+v", dp.Name(), dp.Status())
	}
	t.Fatalf("ping %v from %s: %v\n%s", dst, ns, err, out)
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
