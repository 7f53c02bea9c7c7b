"""The study's own words: the sentences of its Methods that fix a rule we implement.

Pages show them beside the setting they justify, so a user can see where a default comes from;
tests check that the defaults say what the sentences say.
"""

from __future__ import annotations

PAPER_TITLE = (
    "CT-based deep learning radiomics to evaluate the tumour immune microenvironment in colorectal "
    "cancer (315 patients, 220 training / 95 validation)"
)

# Pathology (labels)
TSR_RULE = (
    "The high TSR group (Figure 3A) was defined as having a TSR greater than 50%, while the low "
    "TSR group (Figure 3B) had a TSR less than or equal to 50%."
)
TSR_STEP_RULE = "The TSR was calculated as (stromal area/total area) × 100%, ranging from 10% to 90% in 10% increments."
TSR_MAX_RULE = (
    "Additionally, the TSR was computed for three selected areas within the field of view, and the "
    "maximum value was finally selected."
)
TIL_RULE = (
    "Utilizing infiltration status as the basis, the cases were then divided into two groups: Low "
    "TILs group (including cases graded as 0-1, as shown in Figure 3C) and high TILs group "
    "(consisting of cases graded as 2-3, as shown in Figure 3D)."
)
IS_RULE = (
    "The IS of each patient was aggregated by summing four binary scores (ranging from 0 to 4). "
    "A high IS was defined as an IS of > 2, while a low IS was defined as an IS of ≤ 2."
)
TIME_RULE = (
    "More precisely, elevated levels of TSR, TILs, and IS were assigned a score of 3, while lower "
    "levels were given a score of 0. Consequently, a low TIME was indicated by scores of 0 or 1, "
    "while scores of 2 or 3 indicated a high TIME."
)
#: The words that fix which level of each component earns its TIME point.
TIME_DIRECTION_SOURCE = "elevated levels of TSR, TILs, and IS were assigned a score"

# Statistical analysis (Table 1)
NORMALITY_RULE = "The Kolmogorov-Smirnov test was employed to verify the normality of the data."
TABLE_ONE_TEST_RULE = (
    "To compare the data, an independent samples t-test was used for data with a normal distribution "
    "and equal variance, while a Mann-Whitney U test was utilized for those with skewed distributions "
    "or unequal variance."
)
SPLIT_RULE = (
    "The recruited patients were randomly allocated to either a training cohort (n = 220) or a "
    "validation cohort (n = 95). The ratio of participants in the training cohort to the validation "
    "cohort was 7:3."
)
