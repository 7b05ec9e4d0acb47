/** PromQL functions, aggregation operators and keywords offered by the query editor (Prometheus 3.x). */

export interface PromqlFunction {
  name: string;
  signature: string;
  doc: string;
}

function fn(name: string, args: string, doc: string): PromqlFunction {
  return { name, signature: `${name}(${args})`, doc };
}

export const FUNCTIONS: PromqlFunction[] = [
  fn('abs', 'v instant-vector', 'Absolute value of each sample.'),
  fn('absent', 'v instant-vector', '1-element vector if the vector has no elements.'),
  fn('absent_over_time', 'v range-vector', '1-element vector if the range vector has no elements.'),
  fn('acos', 'v instant-vector', 'Arccosine.'),
  fn('acosh', 'v instant-vector', 'Inverse hyperbolic cosine.'),
  fn('asin', 'v instant-vector', 'Arcsine.'),
  fn('asinh', 'v instant-vector', 'Inverse hyperbolic sine.'),
  fn('atan', 'v instant-vector', 'Arctangent.'),
  fn('atanh', 'v instant-vector', 'Inverse hyperbolic tangent.'),
  fn('avg_over_time', 'v range-vector', 'Average of all points in the range.'),
  fn('ceil', 'v instant-vector', 'Rounds up to the nearest integer.'),
  fn('changes', 'v range-vector', 'Number of times the value changed within the range.'),
  fn('clamp', 'v instant-vector, min scalar, max scalar', 'Clamps values between min and max.'),
  fn('clamp_max', 'v instant-vector, max scalar', 'Clamps values to an upper limit.'),
  fn('clamp_min', 'v instant-vector, min scalar', 'Clamps values to a lower limit.'),
  fn('cos', 'v instant-vector', 'Cosine.'),
  fn('cosh', 'v instant-vector', 'Hyperbolic cosine.'),
  fn('count_over_time', 'v range-vector', 'Number of points in the range.'),
  fn('day_of_month', 'v=vector(time()) instant-vector', 'Day of the month (1–31) in UTC.'),
  fn('day_of_week', 'v=vector(time()) instant-vector', 'Day of the week (0–6) in UTC.'),
  fn('day_of_year', 'v=vector(time()) instant-vector', 'Day of the year (1–366) in UTC.'),
  fn('days_in_month', 'v=vector(time()) instant-vector', 'Number of days in the month in UTC.'),
  fn('deg', 'v instant-vector', 'Radians to degrees.'),
  fn('delta', 'v range-vector', 'Difference between the first and last value of a gauge in the range.'),
  fn('deriv', 'v range-vector', 'Per-second derivative by simple linear regression.'),
  fn('double_exponential_smoothing', 'v range-vector, sf scalar, tf scalar', 'Smoothed value (formerly holt_winters).'),
  fn('exp', 'v instant-vector', 'Exponential function.'),
  fn('floor', 'v instant-vector', 'Rounds down to the nearest integer.'),
  fn('histogram_avg', 'v instant-vector', 'Average of native histogram observations.'),
  fn('histogram_count', 'v instant-vector', 'Count of native histogram observations.'),
  fn('histogram_fraction', 'lower scalar, upper scalar, v instant-vector', 'Fraction of observations between lower and upper.'),
  fn('histogram_quantile', 'φ scalar, b instant-vector', 'φ-quantile from the buckets of a histogram.'),
  fn('histogram_stddev', 'v instant-vector', 'Standard deviation of native histogram observations.'),
  fn('histogram_stdvar', 'v instant-vector', 'Standard variance of native histogram observations.'),
  fn('histogram_sum', 'v instant-vector', 'Sum of native histogram observations.'),
  fn('hour', 'v=vector(time()) instant-vector', 'Hour of the day (0–23) in UTC.'),
  fn('idelta', 'v range-vector', 'Difference between the last two samples in the range.'),
  fn('increase', 'v range-vector', 'Increase of a counter over the range.'),
  fn('irate', 'v range-vector', 'Per-second rate from the last two samples of a counter.'),
  fn('label_join', 'v instant-vector, dst_label string, separator string, src_label_1 string, ...', 'Joins label values into a new label.'),
  fn('label_replace', 'v instant-vector, dst_label string, replacement string, src_label string, regex string', 'Sets a label from a regex match on another label.'),
  fn('last_over_time', 'v range-vector', 'Most recent point in the range.'),
  fn('ln', 'v instant-vector', 'Natural logarithm.'),
  fn('log10', 'v instant-vector', 'Decimal logarithm.'),
  fn('log2', 'v instant-vector', 'Binary logarithm.'),
  fn('mad_over_time', 'v range-vector', 'Median absolute deviation of all points in the range.'),
  fn('max_over_time', 'v range-vector', 'Maximum of all points in the range.'),
  fn('min_over_time', 'v range-vector', 'Minimum of all points in the range.'),
  fn('minute', 'v=vector(time()) instant-vector', 'Minute of the hour (0–59) in UTC.'),
  fn('month', 'v=vector(time()) instant-vector', 'Month of the year (1–12) in UTC.'),
  fn('pi', '', 'The number π.'),
  fn('predict_linear', 'v range-vector, t scalar', 'Predicted value t seconds from now by linear regression.'),
  fn('present_over_time', 'v range-vector', '1 for any series with a point in the range.'),
  fn('quantile_over_time', 'φ scalar, v range-vector', 'φ-quantile of the points in the range.'),
  fn('rad', 'v instant-vector', 'Degrees to radians.'),
  fn('rate', 'v range-vector', 'Per-second average rate of increase of a counter over the range.'),
  fn('resets', 'v range-vector', 'Number of counter resets within the range.'),
  fn('round', 'v instant-vector, to_nearest=1 scalar', 'Rounds to the nearest multiple of to_nearest.'),
  fn('scalar', 'v instant-vector', 'The value of a single-element vector as a scalar.'),
  fn('sgn', 'v instant-vector', 'Sign of each sample: 1, -1 or 0.'),
  fn('sin', 'v instant-vector', 'Sine.'),
  fn('sinh', 'v instant-vector', 'Hyperbolic sine.'),
  fn('sort', 'v instant-vector', 'Sorts by value, ascending.'),
  fn('sort_by_label', 'v instant-vector, label string, ...', 'Sorts by label values, ascending.'),
  fn('sort_by_label_desc', 'v instant-vector, label string, ...', 'Sorts by label values, descending.'),
  fn('sort_desc', 'v instant-vector', 'Sorts by value, descending.'),
  fn('sqrt', 'v instant-vector', 'Square root.'),
  fn('stddev_over_time', 'v range-vector', 'Population standard deviation of the points in the range.'),
  fn('stdvar_over_time', 'v range-vector', 'Population standard variance of the points in the range.'),
  fn('sum_over_time', 'v range-vector', 'Sum of all points in the range.'),
  fn('tan', 'v instant-vector', 'Tangent.'),
  fn('tanh', 'v instant-vector', 'Hyperbolic tangent.'),
  fn('time', '', 'Seconds since the epoch at evaluation time.'),
  fn('timestamp', 'v instant-vector', 'Timestamp of each sample in seconds.'),
  fn('vector', 's scalar', 'The scalar as a vector without labels.'),
  fn('year', 'v=vector(time()) instant-vector', 'Year in UTC.'),
];

export const AGGREGATIONS: PromqlFunction[] = [
  fn('avg', 'v instant-vector', 'Average over dimensions.'),
  fn('bottomk', 'k scalar, v instant-vector', 'Smallest k elements by value.'),
  fn('count', 'v instant-vector', 'Number of elements.'),
  fn('count_values', 'label string, v instant-vector', 'Number of elements with the same value.'),
  fn('group', 'v instant-vector', 'All values set to 1.'),
  fn('limit_ratio', 'ratio scalar, v instant-vector', 'A deterministic pseudo-random sample of elements.'),
  fn('limitk', 'k scalar, v instant-vector', 'k elements, deterministic.'),
  fn('max', 'v instant-vector', 'Maximum over dimensions.'),
  fn('min', 'v instant-vector', 'Minimum over dimensions.'),
  fn('quantile', 'φ scalar, v instant-vector', 'φ-quantile over dimensions.'),
  fn('stddev', 'v instant-vector', 'Population standard deviation over dimensions.'),
  fn('stdvar', 'v instant-vector', 'Population standard variance over dimensions.'),
  fn('sum', 'v instant-vector', 'Sum over dimensions.'),
  fn('topk', 'k scalar, v instant-vector', 'Largest k elements by value.'),
];

export const KEYWORDS = [
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'and',
  'or',
  'unless',
  'atan2',
];

/** Keywords followed by a parenthesised list of label names. */
export const LABEL_LIST_KEYWORDS = ['by', 'without', 'on', 'ignoring', 'group_left', 'group_right'];

export const RANGE_DURATIONS = ['$__rate_interval', '$__interval', '$__range', '1m', '5m', '10m', '30m', '1h', '1d'];
