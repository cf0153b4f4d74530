package validation_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/validation"
)

func TestError(t *testing.T) {
	t.Parallel()
	var v validation.Error
	require.NoError(t, v.Err(), "no violation is no error")
	require.NoError(t, (*validation.Error)(nil).Err())

	v.Add("spec.nodes", "must be at least %d", 1)
	v.Add("name", "required")
	err := fmt.Errorf("submit: %w", v.Err())
	require.ErrorIs(t, err, validation.ErrInvalid)
	require.EqualError(t, err, "submit: invalid request: spec.nodes: must be at least 1; name: required")
	var ve *validation.Error
	require.True(t, errors.As(err, &ve))
	require.Equal(t, []string{"spec.nodes", "name"}, ve.Fields())
	require.Equal(t, []validation.FieldViolation{{Field: "spec.nodes", Description: "must be at least 1"}, {Field: "name", Description: "required"}}, ve.Violations)

	one := validation.Invalid("page_size", "at most %d", 100)
	require.ErrorIs(t, one, validation.ErrInvalid)
	require.EqualError(t, one, "invalid request: page_size: at most 100")
	require.NotErrorIs(t, errors.New("other"), validation.ErrInvalid)
}
