package ike

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espy-dpi/espy/internal/charonlab"
	"github.com/espy-dpi/espy/tun/netns"
	"golang.org/x/sys/unix"
)

// floodLab is two namespaces joined by a veth pair: the responder on
// 192.0.2.2, the flooder and the legitimate initiator on 192.0.2.1. The
// responder blackholes the spoofed prefixes, so its answers to them go
// nowhere, and does not filter by reverse path, so it receives them.
type floodLab struct {
	nsResp, nsFlood string
}

var (
	floodRespAddr = netip.MustParseAddr("192.0.2.2")
	floodIniAddr  = netip.MustParseAddr("192.0.2.1")
	spoofed       = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")}
)

func newFloodLab(t *testing.T) *floodLab {
	t.Helper()
	cl := charonlab.New(t, charonlab.Options{Name: "fl", Dev: "efl"})
	l := &floodLab{nsResp: cl.B, nsFlood: cl.A}
	vr := cl.DevB
	for _, p := range spoofed {
		run(t, "ip", "-n", l.nsResp, "route", "add", "blackhole", p.String())
	}
	// /proc/sys/net shows the namespace of the process reading it.
	for _, k := range []string{"all", "default", vr} {
		run(t, "ip", "netns", "exec", l.nsResp, "sh", "-c", "echo 0 >/proc/sys/net/ipv4/conf/"+k+"/rp_filter")
	}
	return l
}

// udpIn opens a UDP socket on addr inside namespace ns.
func udpIn(t *testing.T, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := netns.Do(ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// flooder sends IKE_SA_INIT requests with spoofed IPv4 sources through a
// raw socket (IPPROTO_RAW: we write the IP header).
type flooder struct {
	fd   int
	dst  netip.AddrPort
	ike  []byte // an IKE_SA_INIT request; its SPIi is varied per packet
	sent atomic.Uint64
}

func newFlooder(t *testing.T, ns string, dst netip.AddrPort) *flooder {
	f := &flooder{dst: dst, ike: initRequestFor(t)}
	err := netns.Do(ns, func() (err error) {
		f.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		t.Skipf("flood test needs a raw socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(f.fd) })
	return f
}

// run floods until stop is closed: every packet from another spoofed
// address and port of the two prefixes, with another SPIi.
func (f *flooder) run(stop <-chan struct{}) error {
	pkt := make([]byte, 20+8+len(f.ike))
	ip, udp := pkt[:20], pkt[20:28]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	dst := f.dst.Addr().As4()
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(udp[2:], f.dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(f.ike)))
	copy(pkt[28:], f.ike)
	sa := &unix.SockaddrInet4{Addr: dst}
	for i := uint32(0); ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		src := spoofed[i%2].Addr().As4()
		src[3] = byte(1 + (i/2)%254)
		copy(ip[12:], src[:])
		binary.BigEndian.PutUint16(udp[0:], uint16(1024+i%60000))
		// The kernel fills in the IP ID and checksum; a zero UDP
		// checksum means none (IPv4).
		binary.BigEndian.PutUint32(pkt[28+4:], i) // low half of SPIi
		if err := unix.Sendto(f.fd, pkt, 0, sa); err != nil {
			if err == unix.ENOBUFS || err == unix.EAGAIN {
				runtime.Gosched()
				continue
			}
			return fmt.Errorf("raw send: %w", err)
		}
		f.sent.Add(1)
	}
}

// udpRcvbufErrors returns the kernel's count of UDP datagrams dropped for a
// full receive buffer in namespace ns ("?" if unknown).
func udpRcvbufErrors(ns string) string {
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").Output()
	if err != nil {
		return "?"
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				return f[i]
			}
		}
	}
	return "?"
}

// countingHandler counts the log records with one message.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestSpoofedFlood floods an espy responder with IKE_SA_INIT requests from
// many spoofed sources while legitimate initiators keep establishing IKE
// SAs. The half-open count must stay near the cookie threshold (spoofed
// sources never return a cookie), memory must stay bounded, and every
// legitimate handshake must succeed, through the cookie round trip.
func TestSpoofedFlood(t *testing.T) {
	l := newFloodLab(t)
	const threshold = 10
	resp := NewEndpoint(udpIn(t, l.nsResp, netip.AddrPortFrom(floodRespAddr, DefaultPort)),
		udpIn(t, l.nsResp, netip.AddrPortFrom(floodRespAddr, DefaultNATPort)),
		ListenConfig{CookieThreshold: threshold, Logger: testLogger(t)})
	t.Cleanup(func() { resp.Close() })
	ini := NewEndpoint(udpIn(t, l.nsFlood, netip.AddrPortFrom(floodIniAddr, 0)),
		udpIn(t, l.nsFlood, netip.AddrPortFrom(floodIniAddr, 0)), ListenConfig{Logger: testLogger(t)})
	t.Cleanup(func() { ini.Close() })
	iniCfg, respCfg := configs("aes128gcm16-prfsha256-x25519", "aes128gcm16", nil, nil)
	respCfg.RemoteID = Identity{} // each legitimate initiator has its own identity
	respCfg.LocalTS, respCfg.RemoteTS, iniCfg.LocalTS, iniCfg.RemoteTS = nil, nil, nil, nil
	if err := resp.Respond(respCfg); err != nil {
		t.Fatal(err)
	}
	var cookieRounds atomic.Int64
	iniCfg.Logger = slog.New(countingHandler{msg: "ike: responder demands a cookie", n: &cookieRounds})
	iniCfg.Retransmit = Retransmit{Timeout: 500 * time.Millisecond, Base: 1.5, Tries: 6}
	f := newFlooder(t, l.nsFlood, netip.AddrPortFrom(floodRespAddr, DefaultPort))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapAlloc

	const floodFor = 3 * time.Second
	stop := make(chan struct{})
	floodErr := make(chan error, 1)
	go func() { floodErr <- f.run(stop) }()
	// Let the flood fill the half-open table before the first handshake.
	time.Sleep(200 * time.Millisecond)

	var (
		wg          sync.WaitGroup
		legitOK     atomic.Int64
		mu          sync.Mutex
		legitErrs   []error
		maxHalfOpen int
		maxHeap     uint64
	)
	end := time.Now().Add(floodFor)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				c := *iniCfg
				c.LocalID = FQDN(fmt.Sprintf("legit-%d-%d.example", g, n))
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				sa, err := ini.Initiate(ctx, &c, netip.AddrPortFrom(floodRespAddr, DefaultPort))
				if err == nil {
					legitOK.Add(1)
					err = sa.Delete(ctx)
				}
				cancel()
				if err != nil {
					mu.Lock()
					legitErrs = append(legitErrs, err)
					mu.Unlock()
				}
			}
		}()
	}
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		for time.Now().Before(end) {
			s := resp.Stats()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			mu.Lock()
			maxHalfOpen = max(maxHalfOpen, s.HalfOpen)
			maxHeap = max(maxHeap, m.HeapAlloc)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	<-sampleDone
	close(stop)
	if err := <-floodErr; err != nil {
		t.Fatal(err)
	}
	flooded := time.Since(end.Add(-floodFor - 200*time.Millisecond))
	wg.Wait()

	s := resp.Stats()
	sent := f.sent.Load()
	t.Logf("flood: %d spoofed IKE_SA_INIT in %.1f s (%.0f/s); responder: %d cookies sent, %d queue drops, %s UDP receive buffer drops, max %d half-open (threshold %d), heap +%.1f MiB at most",
		sent, flooded.Seconds(), float64(sent)/flooded.Seconds(), s.CookiesSent, s.QueueDrops, udpRcvbufErrors(l.nsResp), maxHalfOpen, threshold, float64(int64(maxHeap)-int64(heap0))/(1<<20))
	t.Logf("legitimate: %d IKE SAs established (%.1f/s), %d cookie round trips, %d errors",
		legitOK.Load(), float64(legitOK.Load())/floodFor.Seconds(), cookieRounds.Load(), len(legitErrs))
	if len(legitErrs) > 0 {
		t.Errorf("legitimate handshakes failed under the flood: %v", legitErrs)
	}
	if legitOK.Load() < 4 {
		t.Errorf("only %d legitimate IKE SAs in %v", legitOK.Load(), floodFor)
	}
	if cookieRounds.Load() == 0 {
		t.Error("no legitimate handshake did the cookie round trip: the flood did not push the responder over its threshold")
	}
	if sent < 1000 || s.CookiesSent < 1000 {
		t.Errorf("a weak flood: %d sent, %d cookies", sent, s.CookiesSent)
	}
	// Spoofed sources fill the table up to the threshold (overshooting by
	// at most one per worker that checked it at the same time), legitimate
	// ones (at most 4 in flight) with their cookie beyond it.
	if bound := threshold + runtime.GOMAXPROCS(0) + 4; maxHalfOpen > bound {
		t.Errorf("max %d half-open SAs, want at most %d", maxHalfOpen, bound)
	}
	if growth := int64(maxHeap) - int64(heap0); growth > 64<<20 {
		t.Errorf("heap grew by %d MiB under the flood", growth>>20)
	}
}
