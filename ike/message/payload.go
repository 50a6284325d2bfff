package message

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// genericHeaderLen is the length of the generic payload header.
const genericHeaderLen = 4

// MaxPayloads bounds the number of payloads in one message (or inside one
// SK payload). Real messages carry a dozen; the bound stops a peer from
// making the decoder build huge slices out of 4-byte empty payloads.
const MaxPayloads = 64

// Payload is one IKEv2 payload. The concrete types in this package are the
// only implementations.
type Payload interface {
	// Type returns the payload type code.
	Type() PayloadType
	// appendBody appends the payload body (without generic header) to b.
	appendBody(b []byte) []byte
	// decodeBody parses the body. b is the exact body; implementations may
	// keep sub-slices of it.
	decodeBody(b []byte) error
}

// Unknown is a payload of a type this package does not know. The decoder
// never returns one (it skips unknown non-critical payloads); encoders use
// it to send such a payload, e.g. to test how a peer handles one.
type Unknown struct {
	PayloadType PayloadType
	Critical    bool
	Body        []byte
}

// Type implements Payload.
func (u *Unknown) Type() PayloadType          { return u.PayloadType }
func (u *Unknown) appendBody(b []byte) []byte { return append(b, u.Body...) }
func (u *Unknown) decodeBody(b []byte) error  { u.Body = b; return nil }

// newPayload returns an empty payload of type t, or nil if t is unknown.
func newPayload(t PayloadType) Payload {
	switch t {
	case PayloadSA:
		return &SA{}
	case PayloadKE:
		return &KE{}
	case PayloadIDi, PayloadIDr:
		return &ID{Initiator: t == PayloadIDi}
	case PayloadCERT:
		return &Cert{}
	case PayloadCERTREQ:
		return &CertReq{}
	case PayloadAUTH:
		return &Auth{}
	case PayloadNonce:
		return &Nonce{}
	case PayloadNotify:
		return &Notify{}
	case PayloadDelete:
		return &Delete{}
	case PayloadVendor:
		return &VendorID{}
	case PayloadTSi, PayloadTSr:
		return &TS{Initiator: t == PayloadTSi}
	case PayloadSK:
		return &SK{}
	case PayloadSKF:
		return &SKF{}
	case PayloadCP:
		return &CP{}
	case PayloadEAP:
		return &EAP{}
	}
	return nil
}

// repeatable reports whether payload type t may appear more than once in one
// message.
func repeatable(t PayloadType) bool {
	switch t {
	case PayloadNotify, PayloadDelete, PayloadVendor, PayloadCERT, PayloadCERTREQ:
		return true
	}
	return false
}

// nextOf returns the Next Payload value the generic header of p carries when
// followed by next. SK and SKF carry the type of their first inner payload
// instead.
func nextOf(p Payload, next PayloadType) PayloadType {
	switch sk := p.(type) {
	case *SK:
		return sk.NextPayload
	case *SKF:
		return sk.NextPayload
	}
	return next
}

// scratch holds encode buffers. An encoder given no buffer encodes into
// one and returns an exact copy: one allocation of the message's size
// instead of growing through six or seven (a 300-byte IKE_AUTH), or
// starting every message, a 40-byte INFORMATIONAL too, at a guessed size.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxScratch is the largest buffer scratch keeps (one message with a
// certificate chain); bigger ones, rare, go to the garbage collector.
const maxScratch = 16 << 10

// encodeExact runs enc on a scratch buffer and returns a copy of what it
// appended.
func encodeExact(enc func([]byte) ([]byte, error)) ([]byte, error) {
	sp := scratch.Get().(*[]byte)
	b, err := enc((*sp)[:0])
	var out []byte
	if err == nil {
		out = append(make([]byte, 0, len(b)), b...)
	}
	if cap(b) <= maxScratch {
		*sp = b[:0]
		scratch.Put(sp)
	}
	return out, err
}

// AppendPayloads appends the encoding of ps (each with its generic header)
// to b. It returns the type of the first payload, which goes into the
// preceding Next Payload field. An SK or SKF payload must be last.
func AppendPayloads(b []byte, ps []Payload) ([]byte, PayloadType, error) {
	if b != nil || len(ps) == 0 {
		return appendPayloads(b, ps)
	}
	var first PayloadType
	out, err := encodeExact(func(s []byte) ([]byte, error) {
		var err error
		s, first, err = appendPayloads(s, ps)
		return s, err
	})
	if err != nil {
		return nil, PayloadNone, err
	}
	return out, first, nil
}

func appendPayloads(b []byte, ps []Payload) ([]byte, PayloadType, error) {
	if len(ps) == 0 {
		return b, PayloadNone, nil
	}
	for i, p := range ps {
		t := p.Type()
		if (t == PayloadSK || t == PayloadSKF) && i != len(ps)-1 {
			return b, PayloadNone, fmt.Errorf("encode %v: not the last payload: %w", t, ErrSyntax)
		}
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		start := len(b)
		var flags byte
		if u, ok := p.(*Unknown); ok && u.Critical {
			flags = 0x80
		}
		b = append(b, byte(nextOf(p, next)), flags, 0, 0)
		b = p.appendBody(b)
		n := len(b) - start
		if n > 0xffff {
			return b, PayloadNone, fmt.Errorf("encode %v: %d bytes: %w", t, n, ErrLength)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	}
	return b, ps[0].Type(), nil
}

// DecodePayloads parses a chain of payloads starting with type first. It is
// used for the payloads after the IKE header and for the plaintext of an SK
// payload. Unknown non-critical payloads are skipped; an unknown critical
// one yields a *CriticalPayloadError. An SK or SKF payload ends the chain
// and must extend to the end of b.
func DecodePayloads(first PayloadType, b []byte) ([]Payload, error) {
	// Every message of every handshake comes through here, so the slice
	// is sized once from a walk of the generic headers, and the types
	// seen are a bitset on the stack rather than a map.
	var ps []Payload
	if n := chainLen(first, b); n > 0 {
		ps = make([]Payload, 0, n)
	}
	var seen payloadSet
	t := first
	off := 0
	for t != PayloadNone {
		if len(ps) >= MaxPayloads {
			return nil, fmt.Errorf("payload %d: %w", len(ps), ErrTooMany)
		}
		rest := b[off:]
		if len(rest) < genericHeaderLen {
			return nil, fmt.Errorf("payload %v at offset %d: header: %w", t, off, ErrTruncated)
		}
		next := PayloadType(rest[0])
		critical := rest[1]&0x80 != 0
		n := int(binary.BigEndian.Uint16(rest[2:4]))
		if n < genericHeaderLen {
			return nil, fmt.Errorf("payload %v at offset %d: length %d: %w", t, off, n, ErrLength)
		}
		if n > len(rest) {
			return nil, fmt.Errorf("payload %v at offset %d: length %d exceeds %d remaining: %w", t, off, n, len(rest), ErrTruncated)
		}
		body := rest[genericHeaderLen:n:n]
		off += n
		p := newPayload(t)
		if p == nil {
			if critical {
				return nil, fmt.Errorf("payload at offset %d: %w", off-n, &CriticalPayloadError{Type: t})
			}
			t = next
			continue
		}
		if seen.has(t) && !repeatable(t) {
			return nil, fmt.Errorf("payload %v at offset %d: %w", t, off-n, ErrDuplicate)
		}
		seen.add(t)
		if err := p.decodeBody(body); err != nil {
			return nil, fmt.Errorf("payload %v: %w", t, err)
		}
		ps = append(ps, p)
		if t == PayloadSK || t == PayloadSKF {
			if t == PayloadSK && seen.has(PayloadSKF) || t == PayloadSKF && seen.has(PayloadSK) {
				return nil, fmt.Errorf("payload %v: both SK and SKF: %w", t, ErrDuplicate)
			}
			switch sk := p.(type) {
			case *SK:
				sk.NextPayload = next
			case *SKF:
				sk.NextPayload = next
			}
			if off != len(b) {
				return nil, fmt.Errorf("payload %v: %d bytes follow the encrypted payload: %w", t, len(b)-off, ErrLength)
			}
			return ps, nil
		}
		t = next
	}
	if off != len(b) {
		return nil, fmt.Errorf("%d bytes after the last payload: %w", len(b)-off, ErrLength)
	}
	return ps, nil
}

// chainLen counts the payloads DecodePayloads will keep from the chain
// starting with type first in b: the known ones, up to MaxPayloads, as far
// as the generic headers are intact. It only sizes the result; the decoder
// still checks everything.
func chainLen(first PayloadType, b []byte) int {
	n := 0
	for t := first; t != PayloadNone && len(b) >= genericHeaderLen && n < MaxPayloads; {
		l := int(binary.BigEndian.Uint16(b[2:4]))
		if l < genericHeaderLen || l > len(b) {
			break
		}
		if knownPayload(t) {
			n++
		}
		if t == PayloadSK || t == PayloadSKF {
			break
		}
		t, b = PayloadType(b[0]), b[l:]
	}
	return n
}

// knownPayload reports whether newPayload makes a payload of type t.
func knownPayload(t PayloadType) bool {
	switch t {
	case PayloadSA, PayloadKE, PayloadIDi, PayloadIDr, PayloadCERT, PayloadCERTREQ,
		PayloadAUTH, PayloadNonce, PayloadNotify, PayloadDelete, PayloadVendor,
		PayloadTSi, PayloadTSr, PayloadSK, PayloadSKF, PayloadCP, PayloadEAP:
		return true
	}
	return false
}

// payloadSet is a set of payload types.
type payloadSet [4]uint64

func (s *payloadSet) add(t PayloadType)      { s[t>>6] |= 1 << (t & 63) }
func (s *payloadSet) has(t PayloadType) bool { return s[t>>6]&(1<<(t&63)) != 0 }

// opt returns b, or nil when it is empty, so that decoded payloads compare
// equal to the ones built by callers who leave optional data nil.
func opt(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
