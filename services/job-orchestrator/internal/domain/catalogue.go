package domain

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// System names of the TACC supercomputers.
const (
	SystemFrontera  = "frontera"
	SystemStampede3 = "stampede3"
	SystemLonestar6 = "lonestar6"
	SystemVista     = "vista"
)

// Partition is one Slurm partition (queue) of a system with its limits.
type Partition struct {
	Name         string
	MaxNodes     int32
	MaxWalltime  time.Duration
	CoresPerNode int32
	GPUsPerNode  int32
	// MemoryMB is the memory of one node, the most a job may ask for.
	MemoryMB int64
}

// System is one TACC supercomputer and its partitions.
type System struct {
	Name       string
	Partitions []Partition
	// Slurm is the system's own slurmrestd; zero when the orchestrator's
	// default Slurm (SLURMRESTD_URL) serves it.
	Slurm SlurmEndpoint
}

// SlurmEndpoint is where and as whom the orchestrator reaches a system's
// Slurm cluster. The token itself is never in the catalogue: TokenFile
// names a file holding it, TokenEnv an environment variable.
type SlurmEndpoint struct {
	URL        string
	User       string
	TokenFile  string
	TokenEnv   string
	APIVersion string
}

// Partition returns the named partition.
func (s System) Partition(name string) (Partition, bool) {
	for _, p := range s.Partitions {
		if p.Name == name {
			return p, true
		}
	}
	return Partition{}, false
}

// PartitionNames returns the names of the system's partitions.
func (s System) PartitionNames() []string {
	out := make([]string, 0, len(s.Partitions))
	for _, p := range s.Partitions {
		out = append(out, p.Name)
	}
	return out
}

// Catalogue is the set of systems jobs may run on.
type Catalogue struct {
	systems []System
}

// System returns the named system.
func (c *Catalogue) System(name string) (System, bool) {
	for _, s := range c.systems {
		if s.Name == name {
			return s, true
		}
	}
	return System{}, false
}

// Systems returns every system, in catalogue order.
func (c *Catalogue) Systems() []System { return slices.Clone(c.systems) }

//go:embed catalogue.json
var defaultCatalogueJSON []byte

// DefaultCatalogue returns the built-in catalogue of Frontera, Stampede3,
// Lonestar6 and Vista.
func DefaultCatalogue() *Catalogue {
	c, err := ParseCatalogue(defaultCatalogueJSON)
	if err != nil {
		panic(fmt.Sprintf("embedded catalogue is invalid: %v", err)) // caught by the package tests
	}
	return c
}

// DefaultCatalogueJSON returns the built-in catalogue document, a starting
// point for an override file.
func DefaultCatalogueJSON() []byte { return slices.Clone(defaultCatalogueJSON) }

type catalogueDoc struct {
	Systems []struct {
		Name  string `json:"name"`
		Slurm *struct {
			URL        string `json:"url"`
			User       string `json:"user"`
			TokenFile  string `json:"token_file"`
			TokenEnv   string `json:"token_env"`
			APIVersion string `json:"api_version"`
		} `json:"slurm"`
		Partitions []struct {
			Name         string `json:"name"`
			MaxNodes     int32  `json:"max_nodes"`
			MaxWalltime  string `json:"max_walltime"`
			CoresPerNode int32  `json:"cores_per_node"`
			GPUsPerNode  int32  `json:"gpus_per_node"`
			MemoryMB     int64  `json:"memory_mb"`
		} `json:"partitions"`
	} `json:"systems"`
}

// ParseCatalogue reads a catalogue document (the format of catalogue.json)
// and checks it: known system names, unique partitions, positive limits and
// walltimes of at most MaxWalltime.
func ParseCatalogue(data []byte) (*Catalogue, error) {
	var doc catalogueDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse catalogue: %w", err)
	}
	var errs []error
	c := &Catalogue{}
	seenSys := map[string]bool{}
	for _, ds := range doc.Systems {
		switch ds.Name {
		case SystemFrontera, SystemStampede3, SystemLonestar6, SystemVista:
		default:
			errs = append(errs, fmt.Errorf("system %q is not a TACC system of the API", ds.Name))
			continue
		}
		if seenSys[ds.Name] {
			errs = append(errs, fmt.Errorf("system %q listed twice", ds.Name))
			continue
		}
		seenSys[ds.Name] = true
		sys := System{Name: ds.Name}
		if ep := ds.Slurm; ep != nil {
			sys.Slurm = SlurmEndpoint{URL: ep.URL, User: ep.User, TokenFile: ep.TokenFile, TokenEnv: ep.TokenEnv, APIVersion: ep.APIVersion}
			switch {
			case !strings.HasPrefix(ep.URL, "http://") && !strings.HasPrefix(ep.URL, "https://") && !strings.HasPrefix(ep.URL, "unix://"):
				errs = append(errs, fmt.Errorf("system %q: slurm.url %q must be http(s):// or unix://", ds.Name, ep.URL))
			case ep.TokenFile != "" && ep.TokenEnv != "":
				errs = append(errs, fmt.Errorf("system %q: set slurm.token_file or slurm.token_env, not both", ds.Name))
			}
		}
		seenPart := map[string]bool{}
		for _, dp := range ds.Partitions {
			wt, err := time.ParseDuration(dp.MaxWalltime)
			p := Partition{Name: dp.Name, MaxNodes: dp.MaxNodes, MaxWalltime: wt,
				CoresPerNode: dp.CoresPerNode, GPUsPerNode: dp.GPUsPerNode, MemoryMB: dp.MemoryMB}
			where := ds.Name + "/" + dp.Name
			switch {
			case !partitionRe.MatchString(dp.Name):
				errs = append(errs, fmt.Errorf("%s: bad partition name", where))
			case seenPart[dp.Name]:
				errs = append(errs, fmt.Errorf("%s: partition listed twice", where))
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: max_walltime: %w", where, err))
			case wt <= 0 || wt > MaxWalltime:
				errs = append(errs, fmt.Errorf("%s: max_walltime %s not in (0, %s]", where, wt, MaxWalltime))
			case p.MaxNodes < 1 || p.MaxNodes > MaxNodes:
				errs = append(errs, fmt.Errorf("%s: max_nodes %d not in [1, %d]", where, p.MaxNodes, MaxNodes))
			case p.CoresPerNode < 1 || p.CoresPerNode > MaxCoresPerNode:
				errs = append(errs, fmt.Errorf("%s: cores_per_node %d not in [1, %d]", where, p.CoresPerNode, MaxCoresPerNode))
			case p.GPUsPerNode < 0 || p.GPUsPerNode > MaxGPUsPerNode:
				errs = append(errs, fmt.Errorf("%s: gpus_per_node %d not in [0, %d]", where, p.GPUsPerNode, MaxGPUsPerNode))
			case p.MemoryMB < 1 || p.MemoryMB > MaxMemoryMB:
				errs = append(errs, fmt.Errorf("%s: memory_mb %d not in [1, %d]", where, p.MemoryMB, MaxMemoryMB))
			default:
				seenPart[dp.Name] = true
				sys.Partitions = append(sys.Partitions, p)
			}
		}
		if len(sys.Partitions) == 0 && len(errs) == 0 {
			errs = append(errs, fmt.Errorf("system %q has no partitions", ds.Name))
		}
		c.systems = append(c.systems, sys)
	}
	if len(c.systems) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("catalogue lists no systems"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("parse catalogue: %w", err)
	}
	return c, nil
}
