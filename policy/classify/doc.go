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
//     precedence and the scan stops once no remaining table can beat the
//     best hit, as in TupleMerge and PartitionSort.
//
// Items are inserted and deleted one at a time, so the IKE stack's rule
// changes cost one update each, never a rebuild. Lookups do not allocate.
// A Classifier is safe for concurrent lookups; updates must be serialised
// with lookups by the caller.
package classify
