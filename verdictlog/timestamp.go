package verdictlog

import "time"

// tsLayout is @timestamp's layout: RFC 3339 in UTC with nanoseconds.
const tsLayout = "2006-01-02T15:04:05.000000000Z"

// appendTimestamp appends t as tsLayout does. time.Time.AppendFormat
// interprets the layout for every record, which was a tenth of the inline
// daemon's CPU time per new flow (profile of the sample loop); this computes
// the civil date directly (days to year, month and day as in Hinnant's
// civil_from_days) and writes fixed-width digits. Years outside 1 to 9999,
// which the layout would print differently, take AppendFormat.
func appendTimestamp(b []byte, t time.Time) []byte {
	secs := t.Unix()
	days := secs / 86400
	sod := secs - days*86400
	if sod < 0 {
		sod += 86400
		days--
	}
	// Days since 0000-03-01, in 400-year eras of 146,097 days.
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097                                  // day of era, [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // year of era, [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // day of year from March 1, [0, 365]
	mp := (5*doy + 2) / 153                                // month from March, [0, 11]
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	if month > 12 {
		month -= 12
	}
	year := yoe + era*400
	if month <= 2 {
		year++
	}
	if year < 1 || year > 9999 {
		return t.UTC().AppendFormat(b, tsLayout)
	}
	var s [30]byte
	put4(s[0:], int(year))
	s[4] = '-'
	put2(s[5:], int(month))
	s[7] = '-'
	put2(s[8:], int(day))
	s[10] = 'T'
	put2(s[11:], int(sod/3600))
	s[13] = ':'
	put2(s[14:], int(sod/60%60))
	s[16] = ':'
	put2(s[17:], int(sod%60))
	s[19] = '.'
	ns := t.Nanosecond()
	for i := 28; i >= 20; i-- {
		s[i] = byte('0' + ns%10)
		ns /= 10
	}
	s[29] = 'Z'
	return append(b, s[:]...)
}

func put2(b []byte, v int) {
	b[0], b[1] = byte('0'+v/10), byte('0'+v%10)
}

func put4(b []byte, v int) {
	put2(b, v/100)
	put2(b[2:], v%100)
}
