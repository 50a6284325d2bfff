package esp

import "errors"

// Errors callers branch on. Open and Seal wrap them with context.
var (
	// ErrUnsupported: the algorithm or key length cannot be used for ESP.
	ErrUnsupported = errors.New("unsupported algorithm")
	// ErrShort: the packet is too short or not aligned for the algorithm.
	ErrShort = errors.New("truncated packet")
	// ErrSPI: the packet belongs to another SA.
	ErrSPI = errors.New("wrong SPI")
	// ErrReplay: the sequence number was seen or lies left of the window.
	ErrReplay = errors.New("replayed or too old sequence number")
	// ErrAuth: the integrity check value does not verify.
	ErrAuth = errors.New("integrity check failed")
	// ErrPadding: the padding is not 1, 2, 3, ... (RFC 4303 2.4).
	ErrPadding = errors.New("bad padding")
	// ErrDummy: a dummy packet (next header 59) to be dropped silently.
	ErrDummy = errors.New("dummy packet")
	// ErrSeqExhausted: the sequence number would cycle; the SA must be
	// rekeyed (RFC 4303 3.3.3).
	ErrSeqExhausted = errors.New("sequence number exhausted")
	// ErrTooBig: the packet does not fit the destination buffer.
	ErrTooBig = errors.New("packet too big")
)
