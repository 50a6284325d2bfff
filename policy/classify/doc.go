// Package classify is espy's fast SPD classifier: TupleMerge-style tuple
// tables (Daly, Bruschi, Linguaglossa, Pontarelli, Rossi, Tollet, Zane,
// Drwiega; ToN 2019) with an exact-match flow cache in front.
//
// Every item (a decorrelated entry or an ordered rule) has a tuple: for each
// selector dimension, how many leading bits all its values share. A table
// holds items whose tuple is at least the table's, hashed on the packet
// fields masked to the table's tuple; a hash hit is confirmed against the
// item's exact ranges, so arbitrary port and address ranges need no prefix
// expansion. Tables are looked up in turn:
//
//   - over disjoint items (a decorrelated SPD) the first hit is the answer,
//     and tables are probed largest first;
//   - over ordered rules, tables are probed in order of their best
//     precedence and the scan stops at a hit on a final item (one that no
//     better item of another table overlaps, see final.go) or once no
//     remaining table can beat the best hit, as in TupleMerge and
//     PartitionSort.
//
// A prefilter of per-field bitmaps picks the tables worth probing; when
// every table holds only IPv4, unlabelled items, an IPv4 packet takes a
// loop whose hash is one multiply over both addresses in one word.
//
// Items are inserted and deleted one at a time, so the IKE stack's rule
// changes cost one update each, never a rebuild. Lookups do not allocate.
// A Classifier is safe for concurrent lookups; updates must be serialised
// with lookups by the caller.
package classify
