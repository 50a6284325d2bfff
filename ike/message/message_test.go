package message

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// initRequest is an IKE_SA_INIT request as an initiator sends it.
func initRequest() *Message {
	return &Message{
		Header: Header{SPIi: 0x0102030405060708, Exchange: IKE_SA_INIT, Flags: FlagInitiator},
		Payloads: []Payload{
			&Notify{Kind: COOKIE, Data: seq(20, 0x40)},
			&SA{Proposals: []Proposal{
				{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{
					{Type: TransformENCR, ID: ENCR_AES_GCM_16, Attributes: []Attribute{{Type: AttrKeyLength, TV: true, Value: 256}}},
					{Type: TransformPRF, ID: PRF_HMAC_SHA2_256},
					{Type: TransformDH, ID: DH_CURVE25519},
				}},
				{Num: 2, Protocol: ProtoIKE, Transforms: []Transform{
					{Type: TransformENCR, ID: ENCR_AES_CBC, Attributes: []Attribute{{Type: AttrKeyLength, TV: true, Value: 128}, {Type: 99, Data: []byte{1, 2, 3}}}},
					{Type: TransformPRF, ID: PRF_HMAC_SHA2_256},
					{Type: TransformINTEG, ID: AUTH_HMAC_SHA2_256_128},
					{Type: TransformDH, ID: DH_MODP2048},
				}},
			}},
			&KE{Group: DH_CURVE25519, Data: seq(32, 1)},
			&Nonce{Data: seq(32, 0x80)},
			&Notify{Kind: NAT_DETECTION_SOURCE_IP, Data: seq(20, 3)},
			&Notify{Kind: NAT_DETECTION_DESTINATION_IP, Data: seq(20, 4)},
			&VendorID{Data: []byte("espy")},
		},
	}
}

// authPlain is the plaintext payload chain of an IKE_AUTH request.
func authPlain() []Payload {
	return []Payload{
		&ID{Initiator: true, IDType: IDFQDN, Data: []byte("a.lab.example")},
		&Cert{Encoding: CertX509Signature, Data: seq(40, 0)},
		&CertReq{Encoding: CertX509Signature, Authority: seq(20, 9)},
		&ID{IDType: IDIPv4Addr, Data: []byte{192, 0, 2, 2}},
		&Auth{Method: AuthSharedKeyMIC, Data: seq(32, 7)},
		&CP{CPType: CPRequest, Attributes: []CPAttribute{{Type: 1}, {Type: 3, Value: []byte{1}}}},
		&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtoESP, SPI: []byte{0xc0, 0, 0, 1}, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_NULL},
			{Type: TransformINTEG, ID: AUTH_HMAC_SHA2_256_128},
			{Type: TransformESN, ID: ESN_NO},
		}}}},
		&TS{Initiator: true, Selectors: []Selector{{TSType: TSIPv4AddrRange, StartPort: 0, EndPort: 65535,
			StartAddr: netip.MustParseAddr("198.51.100.1"), EndAddr: netip.MustParseAddr("198.51.100.1")}}},
		&TS{Selectors: []Selector{
			{TSType: TSIPv6AddrRange, IPProto: 17, StartPort: 500, EndPort: 500,
				StartAddr: netip.MustParseAddr("2001:db8::1"), EndAddr: netip.MustParseAddr("2001:db8::ff")},
			{TSType: TSSecLabel, Data: []byte("system_u:object_r:x_t:s0")},
		}},
		&Notify{Kind: INITIAL_CONTACT},
		&Notify{Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Kind: REKEY_SA},
		&Delete{Protocol: ProtoESP, SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}, {5, 6, 7, 8}}},
		&Delete{Protocol: ProtoIKE},
		&EAP{Data: []byte{2, 1, 0, 6, 1, 'x'}},
	}
}

func authRequest(t testing.TB) *Message {
	inner, first, err := AppendPayloads(nil, authPlain())
	if err != nil {
		t.Fatal(err)
	}
	return &Message{
		Header: Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1},
		// In a real message Data is IV|ciphertext|ICV; the codec does not care.
		Payloads: []Payload{&SK{NextPayload: first, Data: inner}},
	}
}

func TestRoundTrip(t *testing.T) {
	fragment := &Message{
		Header:   Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagResponse, MessageID: 1},
		Payloads: []Payload{&SKF{NextPayload: PayloadIDr, Number: 1, Total: 3, Data: seq(100, 0)}},
	}
	for name, m := range map[string]*Message{
		"IKE_SA_INIT":         initRequest(),
		"IKE_AUTH":            authRequest(t),
		"SKF":                 fragment,
		"empty INFORMATIONAL": {Header: Header{SPIi: 9, SPIr: 10, Exchange: INFORMATIONAL, Flags: FlagResponse, MessageID: 7}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := m.Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			m.Header.NextPayload = PayloadNone
			if len(m.Payloads) > 0 {
				m.Header.NextPayload = m.Payloads[0].Type()
			}
			m.Header.MajorVersion = 2
			m.Header.Length = uint32(len(b))
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip differs:\n got %#v\nwant %#v", got, m)
			}
			again, err := got.Encode(nil)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encode differs (err %v)", err)
			}
		})
	}
}

func TestRoundTripInner(t *testing.T) {
	want := authPlain()
	b, first, err := AppendPayloads(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePayloads(first, b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("inner payloads differ:\n got %#v\nwant %#v", got, want)
	}
}

// TestGolden pins the exact bytes of an IKE_SA_INIT request, so that an
// encoder change that still round-trips is caught.
func TestGolden(t *testing.T) {
	b, err := initRequest().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "testdata/ike_sa_init.golden", b)
}

// patch returns a copy of b with b[off:off+len(v)] replaced by v.
func patch(b []byte, off int, v ...byte) []byte {
	c := append([]byte(nil), b...)
	copy(c[off:], v)
	return c
}

func setLen16(b []byte, off, n int) []byte {
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(c[off:], uint16(n))
	return c
}

// withPayload builds a message around hand-made payload bytes.
func withPayload(first PayloadType, payloads []byte) []byte {
	h := Header{SPIi: 1, Exchange: IKE_SA_INIT, Flags: FlagInitiator, NextPayload: first, Length: uint32(HeaderLen + len(payloads))}
	return append(AppendHeader(nil, &h), payloads...)
}

func TestMalformed(t *testing.T) {
	good, err := initRequest().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets in good: header 28, first payload (N(COOKIE)) at 28 with
	// length 4+4+20 = 28, SA at 56.
	const sa = HeaderLen + 28
	nonce := []byte{byte(PayloadNone), 0, 0, 20}
	nonce = append(nonce, seq(16, 0)...)
	critical := []byte{byte(PayloadNonce), 0x80, 0, 8, 1, 2, 3, 4}
	noncritical := []byte{byte(PayloadNonce), 0x00, 0, 8, 1, 2, 3, 4}
	twoNonces := append([]byte{byte(PayloadNonce), 0, 0, 20}, seq(16, 0)...)
	twoNonces = append(twoNonces, nonce...)

	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", good[:27], ErrTruncated},
		{"version 1", patch(good, 17, 0x10), ErrVersion},
		{"version 3", patch(good, 17, 0x30), ErrVersion},
		{"length beyond datagram", good[:len(good)-1], ErrLength},
		{"length below header", patch(good, 24, 0, 0, 0, 27), ErrLength},
		{"datagram beyond length", append(append([]byte(nil), good...), 0), ErrLength},
		{"payload length below 4", setLen16(good, HeaderLen+2, 3), ErrLength},
		{"payload length past end", setLen16(good, HeaderLen+2, len(good)), ErrTruncated},
		{"proposal length past SA", setLen16(good, sa+4+2, 0x400), ErrLength},
		{"transform count too high", patch(good, sa+4+7, 200), ErrLength},
		{"proposal last flag wrong", patch(good, sa+4, 0), ErrSyntax},
		{"proposal last flag unknown", patch(good, sa+4, 1), ErrSyntax},
		{"transform last flag wrong", patch(good, sa+4+8, 0), ErrSyntax},
		{"truncated payload header", withPayload(PayloadNonce, []byte{0, 0}), ErrTruncated},
		{"nonce too short", withPayload(PayloadNonce, append([]byte{0, 0, 0, 19}, seq(15, 0)...)), ErrLength},
		{"duplicate nonce", withPayload(PayloadNonce, twoNonces), ErrDuplicate},
		{"unknown critical", withPayload(200, critical), ErrUnsupportedCritical},
		{"KE truncated", withPayload(PayloadKE, []byte{0, 0, 0, 6, 0, 19}), ErrTruncated},
		{"notify SPI past end", withPayload(PayloadNotify, []byte{0, 0, 0, 8, 3, 4, 0, 1}), ErrTruncated},
		{"delete count mismatch", withPayload(PayloadDelete, []byte{0, 0, 0, 12, 3, 4, 0, 2, 1, 2, 3, 4}), ErrLength},
		{"delete ESP SPI size 8", withPayload(PayloadDelete, []byte{0, 0, 0, 16, 3, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}), ErrSyntax},
		{"TS count beyond data", withPayload(PayloadTSi, []byte{0, 0, 0, 8, 9, 0, 0, 0}), ErrLength},
		{"TS zero selectors", withPayload(PayloadTSi, []byte{0, 0, 0, 8, 0, 0, 0, 0}), ErrSyntax},
		{"TS IPv4 wrong length", withPayload(PayloadTSi, append([]byte{0, 0, 0, 28, 1, 0, 0, 0, 7, 0, 0, 20}, seq(16, 0)...)), ErrLength},
		{"SKF fragment 0", withPayload(PayloadSKF, []byte{0, 0, 0, 8, 0, 0, 0, 1}), ErrSyntax},
		{"SKF beyond total", withPayload(PayloadSKF, []byte{0, 0, 0, 8, 0, 3, 0, 2}), ErrSyntax},
		{"SK not last", withPayload(PayloadSK, append([]byte{byte(PayloadIDi), 0, 0, 6, 1, 2}, nonce...)), ErrLength},
		{"EAP length mismatch", withPayload(PayloadEAP, []byte{0, 0, 0, 10, 2, 1, 0, 9, 1, 'x'}), ErrLength},
		{"CP attribute past end", withPayload(PayloadCP, []byte{0, 0, 0, 12, 1, 0, 0, 0, 0, 1, 0, 9}), ErrTruncated},
		{"trailing after chain", withPayload(PayloadNonce, append(append([]byte(nil), nonce...), 0, 0, 0, 0)), ErrLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.msg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode: %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("critical type reported", func(t *testing.T) {
		_, err := Decode(withPayload(200, critical))
		var ce *CriticalPayloadError
		if !errors.As(err, &ce) || ce.Type != 200 {
			t.Fatalf("got %v, want CriticalPayloadError{200}", err)
		}
	})
	t.Run("unknown non-critical skipped", func(t *testing.T) {
		m, err := Decode(withPayload(200, append(noncritical, nonce...)))
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Payloads) != 1 || m.Payloads[0].Type() != PayloadNonce {
			t.Fatalf("payloads %v, want only the nonce", m.Payloads)
		}
	})
	t.Run("too many payloads", func(t *testing.T) {
		var b []byte
		for i := 0; i <= MaxPayloads; i++ {
			b = append(b, byte(PayloadVendor), 0, 0, 4)
		}
		b[len(b)-4] = 0
		_, err := Decode(withPayload(PayloadVendor, b))
		if !errors.Is(err, ErrTooMany) {
			t.Fatalf("got %v, want ErrTooMany", err)
		}
	})
}

// TestTruncations cuts a valid message at every length and fixes up the
// header length, so each inner length field meets data that ends early.
func TestTruncations(t *testing.T) {
	for _, m := range []*Message{initRequest(), authRequest(t)} {
		b, err := m.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		inner := b
		if sk, ok := m.Payloads[0].(*SK); ok {
			inner = withPayload(sk.NextPayload, sk.Data)
			inner[16] = byte(sk.NextPayload)
		}
		for n := HeaderLen; n < len(inner); n++ {
			c := append([]byte(nil), inner[:n]...)
			binary.BigEndian.PutUint32(c[24:], uint32(n))
			if _, err := Decode(c); err == nil && n != HeaderLen {
				// A cut exactly at a payload boundary leaves a valid
				// prefix only if that payload's Next Payload is NONE,
				// which is never the case before the last one.
				t.Errorf("cut at %d of %d decoded without error", n, len(inner))
			}
		}
	}
}

func TestSelectorContains(t *testing.T) {
	any4 := Selector{TSType: TSIPv4AddrRange, EndPort: 65535, StartAddr: netip.MustParseAddr("0.0.0.0"), EndAddr: netip.MustParseAddr("255.255.255.255")}
	host := Selector{TSType: TSIPv4AddrRange, IPProto: 6, StartPort: 80, EndPort: 80, StartAddr: netip.MustParseAddr("192.0.2.1"), EndAddr: netip.MustParseAddr("192.0.2.1")}
	if !any4.Contains(&host) || host.Contains(&any4) {
		t.Fatal("containment wrong")
	}
}

func BenchmarkDecodeInit(b *testing.B) {
	msg, err := initRequest().Encode(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKnownPayload keeps knownPayload, which sizes the decoder's result,
// in step with newPayload, which decides what the decoder keeps.
func TestKnownPayload(t *testing.T) {
	for i := range 256 {
		pt := PayloadType(i)
		if got, want := knownPayload(pt), newPayload(pt) != nil; got != want {
			t.Errorf("knownPayload(%v) = %v, newPayload gives a payload: %v", pt, got, want)
		}
	}
}

// TestChainLen checks the decoder's size estimate against what it decodes,
// including unknown payloads (skipped) and chains cut short (estimated up
// to the cut).
func TestChainLen(t *testing.T) {
	init, err := initRequest().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	inner, first, err := AppendPayloads(nil, authPlain())
	if err != nil {
		t.Fatal(err)
	}
	withUnknown, ufirst, err := AppendPayloads(nil, []Payload{&Unknown{PayloadType: 200, Body: []byte{1}}, &Nonce{Data: seq(16, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		first PayloadType
		b     []byte
		want  int
	}{
		{"IKE_SA_INIT", PayloadType(init[16]), init[HeaderLen:], len(initRequest().Payloads)},
		{"IKE_AUTH plaintext", first, inner, len(authPlain())},
		{"unknown skipped", ufirst, withUnknown, 1},
		{"cut in the second payload", PayloadType(init[16]), init[HeaderLen : HeaderLen+40], 1},
		{"empty", PayloadNone, nil, 0},
		{"bad length", PayloadNonce, []byte{0, 0, 0, 2}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chainLen(tt.first, tt.b); got != tt.want {
				t.Errorf("chainLen = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestEncodeExact checks that encoding without a buffer (through the
// scratch pool) gives the same bytes as appending to one, in a slice of
// its own that the next encode does not overwrite.
func TestEncodeExact(t *testing.T) {
	for name, enc := range map[string]func([]byte) ([]byte, error){
		"Encode": initRequest().Encode,
		"AppendPayloads": func(b []byte) ([]byte, error) {
			b, _, err := AppendPayloads(b, authPlain())
			return b, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			want, err := enc([]byte{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := enc(nil)
			if err != nil {
				t.Fatal(err)
			}
			keep := append([]byte(nil), got...)
			if _, err := enc(nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || !bytes.Equal(got, keep) || len(got) != cap(got) {
				t.Errorf("got %d bytes (cap %d), want %d; unchanged by the next encode: %v", len(got), cap(got), len(want), bytes.Equal(got, keep))
			}
		})
	}
}
