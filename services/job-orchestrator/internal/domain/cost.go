package domain

import (
	"errors"
	"math"
	"time"
)

// Default prices of the cost estimate.
const (
	DefaultUSDPerGPUHour  = 0.35
	DefaultUSDPerNodeHour = 0.10
)

// Rates price node-hours and GPU-hours.
type Rates struct {
	USDPerNodeHour float64
	USDPerGPUHour  float64
}

// DefaultRates returns the default prices.
func DefaultRates() Rates {
	return Rates{USDPerNodeHour: DefaultUSDPerNodeHour, USDPerGPUHour: DefaultUSDPerGPUHour}
}

// Validate rejects negative or non-finite rates.
func (r Rates) Validate() error {
	for _, v := range []float64{r.USDPerNodeHour, r.USDPerGPUHour} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("rates must be finite and not negative")
		}
	}
	return nil
}

// Cost is the estimated cost of a job.
type Cost struct {
	NodeHours float64
	GPUHours  float64
	USD       float64
}

// Estimate prices res for duration d (the walltime before the job ran,
// the actual run time after). Values are rounded to 1/10000 of an hour and
// to a cent.
func (r Rates) Estimate(res Resources, d time.Duration) Cost {
	hours := d.Hours()
	nh := round(float64(res.Nodes)*hours, 1e4)
	gh := round(float64(res.Nodes)*float64(res.GPUsPerNode)*hours, 1e4)
	return Cost{NodeHours: nh, GPUHours: gh, USD: round(nh*r.USDPerNodeHour+gh*r.USDPerGPUHour, 100)}
}

func round(v, scale float64) float64 { return math.Round(v*scale) / scale }
