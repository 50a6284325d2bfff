package message

import (
	"encoding/binary"
	"fmt"
)

// KE is the Key Exchange payload (RFC 7296 section 3.4).
type KE struct {
	Group uint16 // key exchange method (Transform Type 4 ID)
	Data  []byte // the public value
}

// Type implements Payload.
func (*KE) Type() PayloadType { return PayloadKE }

func (k *KE) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, k.Group)
	return append(append(b, 0, 0), k.Data...)
}

func (k *KE) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("KE body: %w", ErrTruncated)
	}
	k.Group = binary.BigEndian.Uint16(b)
	k.Data = opt(b[4:])
	return nil
}
