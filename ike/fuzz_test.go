package ike

import (
	"crypto/rand"
	"net"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// initRequestFor builds a valid IKE_SA_INIT request for the responder
// configuration used by FuzzResponder.
func initRequestFor(tb testing.TB) []byte {
	kex, err := ikecrypto.GenerateKey(message.DH_CURVE25519, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	p := MustParseProposal("aes128gcm16-prfsha256-x25519", true)
	m := &message.Message{
		Header: message.Header{SPIi: 0x1122334455667788, Exchange: message.IKE_SA_INIT, Flags: message.FlagInitiator},
		Payloads: []message.Payload{
			saPayload([]Proposal{p}, message.ProtoIKE, nil),
			&message.KE{Group: message.DH_CURVE25519, Data: kex.PublicKey()},
			&message.Nonce{Data: make([]byte, 32)},
			&message.Notify{Kind: message.NAT_DETECTION_SOURCE_IP, Data: make([]byte, 20)},
			&message.Notify{Kind: message.NAT_DETECTION_DESTINATION_IP, Data: make([]byte, 20)},
		},
	}
	b, err := m.Encode(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzResponder feeds arbitrary datagrams to a live responder endpoint, as
// IKE_SA_INIT requests and as messages for the IKE SAs it creates. The
// answers go to a sink socket. Nothing may panic, and the number of
// half-open SAs must stay within the configured cap.
func FuzzResponder(f *testing.F) {
	f.Add(initRequestFor(f), false)
	f.Add(initRequestFor(f)[:100], true)
	sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		f.Fatal(err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := sink.ReadFromUDP(buf); err != nil {
				return
			}
		}
	}()
	from := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	const maxHalfOpen = 8
	e := listen(f, ListenConfig{MaxHalfOpen: maxHalfOpen, CookieThreshold: 4})
	_, resp := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	if err := e.Respond(resp); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, natt bool) {
		e.handle(append([]byte(nil), pkt...), from, natt)
		// Aim the same bytes at an existing SA, so that request handling
		// on established state sees them too.
		e.mu.Lock()
		var spiR uint64
		for spi := range e.sas {
			spiR = spi
			break
		}
		n := len(e.halfOpen)
		e.mu.Unlock()
		if n > maxHalfOpen {
			t.Fatalf("%d half-open SAs, cap %d", n, maxHalfOpen)
		}
		if spiR != 0 && len(pkt) >= message.HeaderLen {
			b := append([]byte(nil), pkt...)
			copy(b[8:16], []byte{byte(spiR >> 56), byte(spiR >> 48), byte(spiR >> 40), byte(spiR >> 32), byte(spiR >> 24), byte(spiR >> 16), byte(spiR >> 8), byte(spiR)})
			b[19] |= byte(message.FlagInitiator)
			e.handle(b, from, natt)
		}
	})
}
