package message

import (
	"encoding/binary"
	"fmt"
)

// EAP is the EAP payload (RFC 7296 section 3.16), kept opaque: the EAP
// message's own length must match the payload.
type EAP struct {
	Data []byte
}

// Type implements Payload.
func (*EAP) Type() PayloadType { return PayloadEAP }

func (e *EAP) appendBody(b []byte) []byte { return append(b, e.Data...) }

func (e *EAP) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("EAP message: %w", ErrTruncated)
	}
	if n := int(binary.BigEndian.Uint16(b[2:4])); n != len(b) {
		return fmt.Errorf("EAP length %d in %d bytes: %w", n, len(b), ErrLength)
	}
	e.Data = b
	return nil
}
