package message

import (
	"fmt"
)

// Nonce lengths allowed by RFC 7296 section 3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Nonce payload (RFC 7296 section 3.9).
type Nonce struct {
	Data []byte
}

// Type implements Payload.
func (*Nonce) Type() PayloadType { return PayloadNonce }

func (n *Nonce) appendBody(b []byte) []byte { return append(b, n.Data...) }

func (n *Nonce) decodeBody(b []byte) error {
	if len(b) < MinNonceLen || len(b) > MaxNonceLen {
		return fmt.Errorf("nonce of %d bytes: %w", len(b), ErrLength)
	}
	n.Data = b
	return nil
}
