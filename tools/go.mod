module github.com/cosmic-horizons/fleet/tools

go 1.26.0

require (
	github.com/cosmic-horizons/fleet/libs v0.0.0
	github.com/cosmic-horizons/fleet/proto v0.0.0
	github.com/cosmic-horizons/fleet/schemas v0.0.0
)

require (
	github.com/stretchr/testify v1.12.1 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)

replace (
	github.com/cosmic-horizons/fleet/libs => ../libs
	github.com/cosmic-horizons/fleet/proto => ../proto
	github.com/cosmic-horizons/fleet/schemas => ../schemas
)
