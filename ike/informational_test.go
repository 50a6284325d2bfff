package ike

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// TestInformational exercises requests on an established IKE SA: a
// liveness check, an unknown critical payload inside SK, a Child SA delete
// and a refused CREATE_CHILD_SA.
func TestInformational(t *testing.T) {
	p := newPair(t, "aes128gcm16-prfsha256-x25519", "null-sha256", ListenConfig{})
	sa, err := p.initiate(t)
	if err != nil {
		t.Fatal(err)
	}
	_, r := checkEstablished(t, p, sa)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	resp, err := sa.request(ctx, message.INFORMATIONAL, nil)
	if err != nil || len(resp) != 0 {
		t.Fatalf("liveness check: %v, %d payloads", err, len(resp))
	}

	resp, err = sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Unknown{PayloadType: 200, Critical: true, Body: []byte{1}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := message.FindNotify(resp, message.UNSUPPORTED_CRITICAL_PAYLOAD); n == nil || len(n.Data) != 1 || n.Data[0] != 200 {
		t.Fatalf("unknown critical payload answered with %v", resp)
	}

	resp, err = sa.request(ctx, message.CREATE_CHILD_SA, []message.Payload{&message.Nonce{Data: make([]byte, 32)}})
	if err != nil || message.FindNotify(resp, message.INVALID_SYNTAX) == nil {
		t.Fatalf("CREATE_CHILD_SA: %v %v", err, resp)
	}

	// Deleting the Child SA by our inbound SPI: the responder answers with
	// its own inbound SPI and unregisters both directions.
	c := sa.Children()[0]
	spi := []byte{byte(c.InSPI >> 24), byte(c.InSPI >> 16), byte(c.InSPI >> 8), byte(c.InSPI)}
	resp, err = sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{spi}}})
	if err != nil {
		t.Fatal(err)
	}
	d, ok := message.Get(resp, message.PayloadDelete).(*message.Delete)
	want := []byte{byte(r.InSPI >> 24), byte(r.InSPI >> 16), byte(r.InSPI >> 8), byte(r.InSPI)}
	if !ok || len(d.SPIs) != 1 || string(d.SPIs[0]) != string(want) {
		t.Fatalf("delete answered with %v", resp)
	}
	if _, ok := p.respReg.get(r.InSPI); ok {
		t.Fatal("responder still has the deleted Child SA registered")
	}
}

// TestInitUnsupportedCritical sends an IKE_SA_INIT request with an unknown
// critical payload: the responder must answer UNSUPPORTED_CRITICAL_PAYLOAD
// naming the type, without creating state.
func TestInitUnsupportedCritical(t *testing.T) {
	e := listen(t, ListenConfig{})
	_, resp := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	if err := e.Respond(resp); err != nil {
		t.Fatal(err)
	}
	m, err := message.Decode(initRequestFor(t))
	if err != nil {
		t.Fatal(err)
	}
	m.Payloads = append(m.Payloads, &message.Unknown{PayloadType: 222, Critical: true})
	req, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ike, _ := e.Addrs()
	if _, err := c.WriteToUDPAddrPort(req, ike); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := message.Decode(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	nt := message.FindNotify(got.Payloads, message.UNSUPPORTED_CRITICAL_PAYLOAD)
	if !got.IsResponse() || got.SPIr != 0 || nt == nil || len(nt.Data) != 1 || nt.Data[0] != 222 {
		t.Fatalf("answer %+v", got)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sas) != 0 {
		t.Fatal("responder created state for a rejected request")
	}
}

// TestInvalidMajorVersion sends an IKE_SA_INIT claiming version 3.0.
func TestInvalidMajorVersion(t *testing.T) {
	e := listen(t, ListenConfig{})
	_, resp := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	if err := e.Respond(resp); err != nil {
		t.Fatal(err)
	}
	req := initRequestFor(t)
	req[17] = 0x30
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ike, _ := e.Addrs()
	c.WriteToUDPAddrPort(req, ike)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := message.Decode(buf[:n])
	if err != nil || got.MajorVersion != 2 || message.FindNotify(got.Payloads, message.INVALID_MAJOR_VERSION) == nil {
		t.Fatalf("answer %+v (%v)", got, err)
	}
}
