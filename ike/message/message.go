package message

import (
	"encoding/binary"
	"fmt"
)

// Message is a decoded IKEv2 message.
type Message struct {
	Header
	Payloads []Payload
}

// Decode parses a whole message. The returned payloads reference b. Length
// in the header must equal len(b) exactly.
func Decode(b []byte) (*Message, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	if int(h.Length) != len(b) {
		return nil, fmt.Errorf("ike header: length %d, datagram %d: %w", h.Length, len(b), ErrLength)
	}
	ps, err := DecodePayloads(h.NextPayload, b[HeaderLen:])
	if err != nil {
		return nil, fmt.Errorf("ike %v: %w", h.Exchange, err)
	}
	return &Message{Header: h, Payloads: ps}, nil
}

// Encode appends the encoding of m to b, filling in Next Payload and Length.
func (m *Message) Encode(b []byte) ([]byte, error) {
	if b == nil {
		return encodeExact(m.encode)
	}
	return m.encode(b)
}

func (m *Message) encode(b []byte) ([]byte, error) {
	start := len(b)
	b = AppendHeader(b, &m.Header)
	b, first, err := appendPayloads(b, m.Payloads)
	if err != nil {
		return nil, err
	}
	b[start+16] = byte(first)
	n := len(b) - start
	if n > MaxMessageLen {
		return nil, fmt.Errorf("encode: %d bytes: %w", n, ErrLength)
	}
	binary.BigEndian.PutUint32(b[start+24:], uint32(n))
	return b, nil
}

// Get returns the first payload of type t, or nil.
func Get(ps []Payload, t PayloadType) Payload {
	for _, p := range ps {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// Notifies returns the Notify payloads of ps, in order.
func Notifies(ps []Payload) []*Notify {
	var ns []*Notify
	for _, p := range ps {
		if n, ok := p.(*Notify); ok {
			ns = append(ns, n)
		}
	}
	return ns
}

// FindNotify returns the first notification of kind k, or nil.
func FindNotify(ps []Payload, k NotifyType) *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.Kind == k {
			return n
		}
	}
	return nil
}
