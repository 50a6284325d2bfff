package charonlab

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/espy-dpi/espy/tun/netns"
)

// TCPBothWays listens in namespace srv on srvAddr, connects from
// namespace cli and copies size random bytes each way at once, checking
// what arrives.
func TCPBothWays(t testing.TB, cli, srv string, srvAddr netip.Addr, size int) {
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
