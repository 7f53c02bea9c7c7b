# Reference values for crc_core.evaluation's calibration (issue 26, points 1 and 8), from R 4.2.2 with
# rms 6.5-0 (Debian bookworm's r-cran-* packages), on tests/reference/evaluation_data.csv (synthetic:
# outcome y, two models' probabilities a and b, b rounded to 2 decimals so that it has ties).
#
#   Rscript tests/reference/calibration.R tests/reference/evaluation_data.csv tests/reference/calibration_r.json
suppressPackageStartupMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
one <- function(p, y) {
  # Calibration-in-the-large (Van Calster et al. 2019, "mean calibration"): the intercept with the
  # slope fixed at 1, and its Wald CI (confint.default).
  citl <- glm(y ~ offset(qlogis(p)), family = binomial)
  # The joint intercept, fitted with the slope: what rms::val.prob prints as "Intercept".
  vp <- val.prob(p, y, pl = FALSE)
  # The smoothed calibration curve as val.prob draws it (its source: Sm <- lowess(p, y, iter = 0)).
  sm <- lowess(p, y, iter = 0)
  list(citl = unname(coef(citl)), citl_se = unname(sqrt(diag(vcov(citl)))),
       citl_ci = unname(as.numeric(confint.default(citl))),
       intercept_with_slope = unname(vp["Intercept"]), slope = unname(vp["Slope"]),
       eavg = unname(vp["Eavg"]), emax = unname(vp["Emax"]), e90 = unname(vp["E90"]),
       lowess_x = sm$x, lowess_y = sm$y)
}
out <- list(a = one(d$a, d$y), b = one(d$b, d$y), r = R.version.string,
            rms = as.character(packageVersion("rms")))
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), args[2])
