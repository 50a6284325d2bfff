package esptun

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/tun/netns"
)

// BenchmarkTunnelTCP pushes one TCP stream from namespace a to b: directly
// over the veth pair (the baseline) and through the userspace data plane
// for several algorithms. Each iteration sends 1 MB; MB/s is goodput.
//
//	go test -run XXX -bench TunnelTCP -benchtime 3s ./esptun
func BenchmarkTunnelTCP(b *testing.B) {
	l := newLab(b)
	na := start(b, l.a, addrA, netip.PrefixFrom(innerA, 32))
	nb := start(b, l.b, addrB, netip.PrefixFrom(innerB, 32))
	lts, rts := []netip.Prefix{netip.PrefixFrom(innerA, 32)}, []netip.Prefix{netip.PrefixFrom(innerB, 32)}
	stream := func(b *testing.B, dst netip.Addr) {
		var ln net.Listener
		if err := netns.Do(l.b, func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan int64, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- 0
				return
			}
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			done <- n
		}()
		var c net.Conn
		if err := netns.Do(l.a, func() (err error) {
			c, err = net.Dial("tcp", ln.Addr().String())
			return err
		}); err != nil {
			b.Fatal(err)
		}
		chunk := make([]byte, 1<<20)
		b.SetBytes(int64(len(chunk)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		if n := <-done; n != int64(b.N)*int64(len(chunk)) {
			b.Fatalf("received %d bytes of %d", n, int64(b.N)*int64(len(chunk)))
		}
		b.StopTimer()
		c.Close()
	}
	b.Run("veth-direct", func(b *testing.B) { stream(b, addrB) })
	for _, c := range []struct {
		esp   string
		encap bool
	}{
		{"null-sha256", false}, {"null-sha256", true}, {"aes128gmac", false},
		{"aes128gcm16", false}, {"aes128gcm16", true}, {"chacha20poly1305", false}, {"aes256-sha256", false},
	} {
		name := c.esp
		if c.encap {
			name += "-udp"
		}
		b.Run(name, func(b *testing.B) {
			if err := nb.ep.Respond(peerConfig("b.lab.example", "a.lab.example", c.esp, ike.ModeTunnel, false, rts, lts, ike.WithDataPlane(nil, nb.dp))); err != nil {
				b.Fatal(err)
			}
			sa, err := na.ep.Initiate(ctx(b), peerConfig("a.lab.example", "b.lab.example", c.esp, ike.ModeTunnel, c.encap, lts, rts, ike.WithDataPlane(nil, na.dp)), netip.AddrPortFrom(addrB, ike.DefaultPort))
			if err != nil {
				b.Fatal(err)
			}
			defer sa.Delete(ctx(b))
			stream(b, innerB)
		})
	}
}
