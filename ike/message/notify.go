package message

import (
	"encoding/binary"
	"fmt"
)

// Notify is the Notify payload (RFC 7296 section 3.10).
type Notify struct {
	Protocol ProtocolID
	SPI      []byte
	Kind     NotifyType
	Data     []byte
}

// Type implements Payload.
func (*Notify) Type() PayloadType { return PayloadNotify }

func (n *Notify) appendBody(b []byte) []byte {
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.Kind))
	return append(append(b, n.SPI...), n.Data...)
}

func (n *Notify) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("notify body: %w", ErrTruncated)
	}
	n.Protocol = ProtocolID(b[0])
	spi := int(b[1])
	n.Kind = NotifyType(binary.BigEndian.Uint16(b[2:4]))
	if 4+spi > len(b) {
		return fmt.Errorf("notify SPI size %d: %w", spi, ErrTruncated)
	}
	if spi > 0 {
		n.SPI = b[4 : 4+spi : 4+spi]
	}
	n.Data = opt(b[4+spi:])
	return nil
}
