package message

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the length of the fixed IKE header.
const HeaderLen = 28

// MaxMessageLen bounds the messages the decoder accepts: a UDP datagram
// cannot carry more.
const MaxMessageLen = 65535

// Header is the fixed IKE header (RFC 7296 section 3.1).
type Header struct {
	SPIi, SPIr   uint64
	NextPayload  PayloadType
	MajorVersion uint8 // 2 on send; decoding rejects anything else
	MinorVersion uint8
	Exchange     ExchangeType
	Flags        Flags
	MessageID    uint32
	Length       uint32 // total message length including the header
}

// IsResponse reports whether the Response flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the Initiator flag is set.
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// AppendHeader appends the 28-byte encoding of h to b. A zero MajorVersion
// is written as 2.
func AppendHeader(b []byte, h *Header) []byte {
	major := h.MajorVersion
	if major == 0 {
		major = 2
	}
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	b = append(b, byte(h.NextPayload), major<<4|h.MinorVersion&0x0f, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// DecodeHeader parses the fixed header at the start of b. It checks the
// major version and that Length is sane, but not that b holds Length bytes;
// Decode does that. Callers that only need the SPIs (demultiplexing, cookie
// checks) can use it without parsing payloads.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, fmt.Errorf("ike header: %d bytes: %w", len(b), ErrTruncated)
	}
	h.SPIi = binary.BigEndian.Uint64(b[0:8])
	h.SPIr = binary.BigEndian.Uint64(b[8:16])
	h.NextPayload = PayloadType(b[16])
	h.MajorVersion = b[17] >> 4
	h.MinorVersion = b[17] & 0x0f
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if h.MajorVersion != 2 {
		return h, fmt.Errorf("ike header: version %d.%d: %w", h.MajorVersion, h.MinorVersion, ErrVersion)
	}
	if h.Length < HeaderLen || h.Length > MaxMessageLen {
		return h, fmt.Errorf("ike header: length %d: %w", h.Length, ErrLength)
	}
	return h, nil
}
