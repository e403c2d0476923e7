package etcdstats

import (
	"math"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// hist is a classic Prometheus histogram: counts[i] observations at or
// below upper[i] seconds; the last bound is +Inf and its count the total.
type hist struct {
	upper  []float64
	counts []uint64
}

// sumHistograms adds up the series of one family, which must share their
// buckets; etcd's disk histograms have one unlabelled series.
func sumHistograms(ms []*dto.Metric) (hist, bool) {
	var h hist
	for _, m := range ms {
		mh := m.GetHistogram()
		if mh == nil || len(mh.GetBucket()) == 0 {
			return hist{}, false // not a classic histogram
		}
		var upper []float64
		var counts []uint64
		for _, b := range mh.GetBucket() {
			if math.IsInf(b.GetUpperBound(), +1) {
				continue // added below from the sample count
			}
			upper = append(upper, b.GetUpperBound())
			counts = append(counts, b.GetCumulativeCount())
		}
		upper = append(upper, math.Inf(+1))
		counts = append(counts, mh.GetSampleCount())
		switch {
		case h.upper == nil:
			h = hist{upper: upper, counts: counts}
		case !slices.Equal(h.upper, upper):
			return hist{}, false
		default:
			for i := range counts {
				h.counts[i] += counts[i]
			}
		}
	}
	return h, h.upper != nil
}

// since returns the observations h holds that base did not. If the
// buckets changed or a count went down, the histogram was reset, and all
// of h is new.
func (h hist) since(base hist) hist {
	if !slices.Equal(h.upper, base.upper) {
		return h
	}
	d := hist{upper: h.upper, counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		if h.counts[i] < base.counts[i] {
			return h
		}
		d.counts[i] = h.counts[i] - base.counts[i]
	}
	return d
}

// quantile returns the upper bound of the bucket where the cumulative
// count reaches q of all observations, and how many there are. The bound
// is what the histogram knows for sure (q of the observations took at most
// that), where interpolating inside etcd's factor-of-two buckets would
// guess. In the +Inf bucket it is the highest finite bound, as Prometheus's
// histogram_quantile says.
func (h hist) quantile(q float64) (time.Duration, uint64) {
	n := len(h.counts)
	if n == 0 || h.counts[n-1] == 0 {
		return 0, 0
	}
	total := h.counts[n-1]
	rank := q * float64(total)
	if total >= 3 {
		// As window's quantile: the two slowest alone never set it.
		rank = min(rank, float64(total-2))
	}
	i := 0
	for i < n-1 && float64(h.counts[i]) < rank {
		i++
	}
	if i == n-1 { // +Inf
		if n < 2 {
			return 0, total
		}
		i = n - 2
	}
	return seconds(h.upper[i]), total
}

func seconds(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}
