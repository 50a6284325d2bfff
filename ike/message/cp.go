package message

import (
	"encoding/binary"
	"fmt"
)

// CP is the Configuration payload (RFC 7296 section 3.15).
type CP struct {
	CPType     CPType
	Attributes []CPAttribute
}

// CPAttribute is one configuration attribute, e.g. INTERNAL_IP4_ADDRESS (1).
type CPAttribute struct {
	Type  uint16 // 15 bits
	Value []byte
}

// Type implements Payload.
func (*CP) Type() PayloadType { return PayloadCP }

func (c *CP) appendBody(b []byte) []byte {
	b = append(b, byte(c.CPType), 0, 0, 0)
	for _, a := range c.Attributes {
		b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b
}

func (c *CP) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("CP header: %w", ErrTruncated)
	}
	c.CPType = CPType(b[0])
	b = b[4:]
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("CP attribute %d: %w", len(c.Attributes)+1, ErrTruncated)
		}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if 4+n > len(b) {
			return fmt.Errorf("CP attribute %d length %d: %w", len(c.Attributes)+1, n, ErrTruncated)
		}
		c.Attributes = append(c.Attributes, CPAttribute{Type: binary.BigEndian.Uint16(b[0:2]) & 0x7fff, Value: opt(b[4 : 4+n : 4+n])})
		b = b[4+n:]
	}
	return nil
}
