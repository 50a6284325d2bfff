// Package policy holds espy's security policy database (SPD): rules with
// RFC 4301 traffic selectors, their YAML form, the first-match reference
// lookup, overlap and shadow analysis, and decorrelation (RFC 4301 section
// 4.4.1 and Appendix B) into disjoint entries, maintained incrementally.
//
// A rule's selectors form a box in seven dimensions (address family, source
// and destination address, IP protocol, source and destination port, security
// label); every set operation in this package is exact box arithmetic.
package policy
