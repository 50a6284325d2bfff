package ike

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// rawInit sends an IKE_SA_INIT request with initiator SPI spi from c and
// returns the decoded answer.
func rawInit(t *testing.T, c *net.UDPConn, to netip.AddrPort, spi uint64) *message.Message {
	return rawInitCookie(t, c, to, spi, nil, 5*time.Second)
}

// rawInitCookie is rawInit with a COOKIE notify first when cookie is set;
// it returns nil when no answer comes within wait.
func rawInitCookie(t *testing.T, c *net.UDPConn, to netip.AddrPort, spi uint64, cookie []byte, wait time.Duration) *message.Message {
	t.Helper()
	m, err := message.Decode(initRequestFor(t))
	if err != nil {
		t.Fatal(err)
	}
	m.SPIi = spi
	if cookie != nil {
		m.Payloads = append([]message.Payload{&message.Notify{Kind: message.COOKIE, Data: cookie}}, m.Payloads...)
	}
	req, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort(req, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		t.Fatal(err)
	}
	a, err := message.Decode(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestCookieThreshold checks that cookies are demanded only once the
// half-open count reaches the threshold, that a retransmitted request gets
// the stored answer, that a cookie is bound to its SPI, and that the
// half-open cap drops requests.
func TestCookieThreshold(t *testing.T) {
	e := listen(t, ListenConfig{CookieThreshold: 2, MaxHalfOpen: 3})
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
	for spi := uint64(1); spi <= 2; spi++ {
		if m := rawInit(t, c, to, spi); m.SPIr == 0 || message.FindNotify(m.Payloads, message.COOKIE) != nil {
			t.Fatalf("request %d below the threshold: %+v", spi, m.Header)
		}
	}
	a := rawInit(t, c, to, 2)
	if a.SPIr == 0 {
		t.Fatal("retransmitted request not answered with its SA")
	}
	m := rawInit(t, c, to, 3)
	n := message.FindNotify(m.Payloads, message.COOKIE)
	if m.SPIr != 0 || n == nil || len(n.Data) != 36 {
		t.Fatalf("third half-open request: %+v %v", m.Header, m.Payloads)
	}
	if m := rawInitCookie(t, c, to, 9, n.Data, 5*time.Second); m == nil || m.SPIr != 0 || message.FindNotify(m.Payloads, message.COOKIE) == nil {
		t.Fatal("cookie for SPI 3 accepted for SPI 9")
	}
	if m := rawInitCookie(t, c, to, 3, n.Data, 5*time.Second); m == nil || m.SPIr == 0 {
		t.Fatal("request with a valid cookie not answered with an SA")
	}
	// Three half-open SAs: the cap. Further requests are dropped without
	// an answer, before any cookie work.
	if m := rawInitCookie(t, c, to, 4, n.Data, 300*time.Millisecond); m != nil {
		t.Fatalf("request beyond MaxHalfOpen answered: %+v", m.Header)
	}
}

func TestInitiateCancelled(t *testing.T) {
	sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ini, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	e := listen(t, ListenConfig{})
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.Initiate(ctx, ini, to); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.Initiate(context.Background(), ini, to)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	e.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Initiate did not return after Close")
	}
	if _, err := e.Initiate(context.Background(), ini, to); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
