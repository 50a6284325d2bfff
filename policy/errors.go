package policy

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on; returned errors wrap them.
var (
	// ErrSyntax marks a configuration that is not valid YAML or not shaped
	// like a policy section.
	ErrSyntax = errors.New("syntax error")
	// ErrBadSelector marks a malformed or impossible traffic selector.
	ErrBadSelector = errors.New("bad selector")
	// ErrUnknownProtocol marks a protocol name that is not known.
	ErrUnknownProtocol = errors.New("unknown protocol")
	// ErrUnknownAction marks an action name that is not known.
	ErrUnknownAction = errors.New("unknown action")
	// ErrLabelTooLong marks a security label over MaxLabelLen octets.
	ErrLabelTooLong = errors.New("security label too long")
	// ErrBadRule marks a rule that is inconsistent as a whole (missing name,
	// duplicate name or precedence, PROTECT without SA, ...).
	ErrBadRule = errors.New("bad rule")
	// ErrOverlap is returned in forbid mode when two rules overlap.
	ErrOverlap = errors.New("overlapping rules")
	// ErrDecorrelationBound is returned when decorrelation would produce
	// more entries than the configured limit.
	ErrDecorrelationBound = errors.New("decorrelation exceeds entry limit")
	// ErrNoRule is returned when a rule named in an update does not exist.
	ErrNoRule = errors.New("no such rule")
)

// ParseError locates a configuration error: file, line and the rule involved.
type ParseError struct {
	File string
	Line int
	Rule string // empty when the error is not inside a rule
	Err  error
}

// Error formats the error as "policy: FILE:LINE: rule NAME: reason".
func (e *ParseError) Error() string {
	loc := e.File
	if loc == "" {
		loc = "<input>"
	}
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
	}
	if e.Rule != "" {
		return fmt.Sprintf("policy: %s: rule %q: %v", loc, e.Rule, e.Err)
	}
	return fmt.Sprintf("policy: %s: %v", loc, e.Err)
}

// Unwrap returns the underlying error, which wraps a sentinel.
func (e *ParseError) Unwrap() error { return e.Err }
