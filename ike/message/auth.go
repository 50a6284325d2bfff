package message

import (
	"fmt"
)

// Auth is the Authentication payload (RFC 7296 section 3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// Type implements Payload.
func (*Auth) Type() PayloadType { return PayloadAUTH }

func (a *Auth) appendBody(b []byte) []byte {
	return append(append(b, byte(a.Method), 0, 0, 0), a.Data...)
}

func (a *Auth) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("AUTH body: %w", ErrTruncated)
	}
	a.Method, a.Data = AuthMethod(b[0]), opt(b[4:])
	return nil
}
