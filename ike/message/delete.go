package message

import (
	"encoding/binary"
	"fmt"
)

// Delete is the Delete payload (RFC 7296 section 3.11).
type Delete struct {
	Protocol ProtocolID
	SPISize  uint8
	SPIs     [][]byte
}

// Type implements Payload.
func (*Delete) Type() PayloadType { return PayloadDelete }

func (d *Delete) appendBody(b []byte) []byte {
	b = append(b, byte(d.Protocol), d.SPISize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, s := range d.SPIs {
		b = append(b, s...)
	}
	return b
}

func (d *Delete) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("delete body: %w", ErrTruncated)
	}
	d.Protocol = ProtocolID(b[0])
	d.SPISize = b[1]
	count := int(binary.BigEndian.Uint16(b[2:4]))
	b = b[4:]
	size := int(d.SPISize)
	switch {
	case d.Protocol == ProtoIKE && (size != 0 || count != 0):
		// Deleting the IKE SA names no SPI: the header's SPIs identify it.
		if size != 0 && size != 8 {
			return fmt.Errorf("delete IKE SPI size %d: %w", size, ErrSyntax)
		}
	case (d.Protocol == ProtoESP || d.Protocol == ProtoAH) && size != 4:
		return fmt.Errorf("delete %d SPI size %d: %w", d.Protocol, size, ErrSyntax)
	}
	if count*size != len(b) {
		return fmt.Errorf("delete %d SPIs of %d bytes in %d bytes: %w", count, size, len(b), ErrLength)
	}
	if count > 0 && size > 0 {
		d.SPIs = make([][]byte, count)
		for i := range d.SPIs {
			d.SPIs[i] = b[i*size : (i+1)*size : (i+1)*size]
		}
	}
	return nil
}
