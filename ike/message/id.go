package message

import (
	"fmt"
)

// ID is an Identification payload, IDi or IDr (RFC 7296 section 3.5).
type ID struct {
	Initiator bool // IDi when true, IDr otherwise
	IDType    IDType
	Data      []byte
}

// Type implements Payload.
func (id *ID) Type() PayloadType {
	if id.Initiator {
		return PayloadIDi
	}
	return PayloadIDr
}

func (id *ID) appendBody(b []byte) []byte {
	return append(append(b, byte(id.IDType), 0, 0, 0), id.Data...)
}

func (id *ID) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("ID body: %w", ErrTruncated)
	}
	id.IDType = IDType(b[0])
	id.Data = opt(b[4:])
	return nil
}

// Body returns the payload body (ID Type, RESERVED, data): the
// RestOfInitIDPayload / RestOfRespIDPayload of RFC 7296 section 2.15.
func (id *ID) Body() []byte { return id.appendBody(nil) }
