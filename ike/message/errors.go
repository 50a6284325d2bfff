package message

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by the decoder. Callers branch on them
// with errors.Is to pick the notification they answer with.
var (
	// ErrTruncated means a header or field extends past the end of the data.
	ErrTruncated = errors.New("truncated")
	// ErrLength means a length field disagrees with the data around it.
	ErrLength = errors.New("bad length")
	// ErrVersion means the major version is not 2 (INVALID_MAJOR_VERSION).
	ErrVersion = errors.New("unsupported major version")
	// ErrDuplicate means a payload that may appear once appeared again.
	ErrDuplicate = errors.New("duplicate payload")
	// ErrTooMany means a message holds more payloads or items than allowed.
	ErrTooMany = errors.New("too many items")
	// ErrSyntax means a field holds a value the RFC forbids (INVALID_SYNTAX).
	ErrSyntax = errors.New("invalid syntax")
	// ErrUnsupportedCritical is matched by *CriticalPayloadError.
	ErrUnsupportedCritical = errors.New("unsupported critical payload")
)

// CriticalPayloadError reports an unknown payload with the critical bit set.
// RFC 7296 section 2.5 requires the whole message to be rejected and an
// UNSUPPORTED_CRITICAL_PAYLOAD notification carrying Type to be sent.
type CriticalPayloadError struct {
	Type PayloadType
}

func (e *CriticalPayloadError) Error() string {
	return fmt.Sprintf("unsupported critical payload type %d", uint8(e.Type))
}

// Is makes errors.Is(err, ErrUnsupportedCritical) true.
func (e *CriticalPayloadError) Is(target error) bool { return target == ErrUnsupportedCritical }
