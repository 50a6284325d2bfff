package ike

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// halfOpenBytes makes a responder answer n IKE_SA_INIT requests (distinct
// SPIs, no IKE_AUTH ever) and returns the live heap the n half-open SAs
// hold, per SA, measured after garbage collection before and after.
func halfOpenBytes(tb testing.TB, n int) float64 {
	tb.Helper()
	e := listen(tb, ListenConfig{CookieThreshold: n + 1, MaxHalfOpen: n + 1})
	_, resp := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	if err := e.Respond(resp); err != nil {
		tb.Fatal(err)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	to, _ := e.Addrs()
	req := initRequestFor(tb)
	answered := make(chan int)
	go func() {
		// Count the answers that carry an SA (SPIr set), reusing one buffer.
		buf := make([]byte, 2048)
		got := 0
		for got < n {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if h, err := message.DecodeHeader(buf[:k]); err == nil && h.SPIr != 0 {
				got++
			}
		}
		answered <- got
	}()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		// A new SPIi makes each request a new IKE SA; the socket buffer
		// is not deep enough for all at once, so pace the sends.
		req[7] = byte(i)
		req[6] = byte(i >> 8)
		req[5] = byte(i >> 16)
		if _, err := c.WriteToUDPAddrPort(req, to); err != nil {
			tb.Fatal(err)
		}
		for e.Stats().HalfOpen < i-32 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	if got := <-answered; got != n {
		tb.Fatalf("%d of %d IKE_SA_INIT requests answered (stats %+v)", got, n, e.Stats())
	}
	if s := e.Stats(); s.HalfOpen != n {
		tb.Fatalf("%d half-open SAs, want %d", s.HalfOpen, n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// TestHalfOpenMemory bounds what one half-open responder SA costs: its
// IKE_SA_INIT request and response, nonces, keys, the two AES-GCM
// contexts and the table entries. 1000 of them (DefaultMaxHalfOpen) then
// stay within a few MiB.
func TestHalfOpenMemory(t *testing.T) {
	per := halfOpenBytes(t, 500)
	t.Logf("%.0f heap bytes per half-open IKE SA", per)
	if per <= 0 || per > 12<<10 {
		t.Fatalf("%.0f heap bytes per half-open IKE SA, want at most 12 KiB", per)
	}
}

// BenchmarkHalfOpen reports the heap bytes per half-open responder SA
// with DefaultMaxHalfOpen of them.
func BenchmarkHalfOpen(b *testing.B) {
	var per float64
	for b.Loop() {
		per = halfOpenBytes(b, DefaultMaxHalfOpen)
	}
	b.ReportMetric(per, "heapB/halfopen")
}

// TestHalfOpenExpire checks that half-open SAs go after HalfOpenTimeout
// even when no further request arrives, and that the cap holds meanwhile.
func TestHalfOpenExpire(t *testing.T) {
	e := listen(t, ListenConfig{CookieThreshold: 100, MaxHalfOpen: 3, HalfOpenTimeout: 200 * time.Millisecond})
	_, resp := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	if err := e.Respond(resp); err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to, _ := e.Addrs()
	for spi := uint64(1); spi <= 3; spi++ {
		if m := rawInit(t, c, to, spi); m.SPIr == 0 {
			t.Fatalf("request %d not answered with an SA", spi)
		}
	}
	if m := rawInitCookie(t, c, to, 4, nil, 200*time.Millisecond); m != nil {
		t.Fatal("request beyond MaxHalfOpen answered")
	}
	if s := e.Stats(); s.HalfOpen != 3 || s.SAs != 3 {
		t.Fatalf("stats %+v, want 3 half-open SAs", s)
	}
	// Timeout plus up to two scan periods.
	deadline := time.Now().Add(200*time.Millisecond + 2*expireScan + time.Second)
	for e.Stats().HalfOpen != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("half-open SAs not expired: %+v", e.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := e.Stats(); s.SAs != 0 {
		t.Fatalf("expired half-open SAs still in the SA table: %+v", s)
	}
	if m := rawInit(t, c, to, 5); m.SPIr == 0 {
		t.Fatal("request after expiry not answered with an SA")
	}
}
