"""Loan applicants generated in the Kaggle "Loan Prediction Based on Customer Behavior" layout.

Real data set: Kaggle "Loan Prediction Based on Customer Behavior" (Subham Jain), `Training
Data.csv`, 252,000 rows: `Id`, 11 applicant fields and `Risk_Flag` (30,996 positive = 12.3 %).
It is in no package registry (registries only hold substitutes such as German credit or HMDA), so
this module generates rows in its layout from its published statistics: ranges Income
10,310-9,999,938 (roughly uniform), Age 21-79, Experience 0-20, CURRENT_JOB_YRS 0-14,
CURRENT_HOUSE_YRS 10-14; 51 professions, 317 cities, 29 Indian states; category counts for
Married/Single, House_Ownership and Car_Ownership from public EDAs (recalled, not re-checked).

Where the signal lives: published models show logistic regression at PR-AUC ~0.16 (the base
rate) while random forests, XGBoost and KNN reach ~0.6, because risk sticks to repeated,
near-identical customer profiles rather than to smooth trends. The generator therefore draws base
profiles with a fixed label (a weak smooth trend plus mostly profile-specific luck) and replicates
each 10-25 times with small jitter (income +-0.5 %, occasionally one year on the job/house counts).
A quarter of the copies draw their flag afresh at the base rate (an assumption): with perfectly
consistent copies trees would reach PR-AUC 1.0 instead of the published ~0.6.

Embedded name lists are plausible real names, not the data set's exact vocabulary (e.g. the real
file's artefact state "Uttar_Pradesh[5]" is replaced by "Goa"). Assumptions: job years never exceed
experience; each city belongs to exactly one state; cities and professions are equally likely.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RAW_COLUMNS: tuple[str, ...] = (
    "Id",
    "Income",
    "Age",
    "Experience",
    "Married/Single",
    "House_Ownership",
    "Car_Ownership",
    "Profession",
    "CITY",
    "STATE",
    "CURRENT_JOB_YRS",
    "CURRENT_HOUSE_YRS",
    "Risk_Flag",
)
LABEL_COLUMN = "Risk_Flag"
DEFAULT_N_ROWS = 60_000

REAL_N_ROWS = 252_000
REAL_POSITIVES = 30_996
POSITIVE_SHARE = REAL_POSITIVES / REAL_N_ROWS  # 0.123
INCOME_RANGE = (10_310, 9_999_938)
AGE_RANGE = (21, 79)
EXPERIENCE_RANGE = (0, 20)
JOB_YRS_RANGE = (0, 14)
HOUSE_YRS_RANGE = (10, 14)
MARRIED_COUNTS = {"single": 226_272, "married": 25_728}
HOUSE_COUNTS = {"rented": 231_898, "owned": 12_918, "norent_noown": 7_184}
CAR_COUNTS = {"no": 176_000, "yes": 76_000}

REPLICATES = (10, 25)  # copies of each base profile
INCOME_JITTER = 0.005  # relative sd of a copy's income around its profile's
YEARS_JITTER_PROB = 0.15  # chance a copy's job/house years are off by one
# Share of copies whose flag is drawn afresh at the base rate instead of copied from the profile.
# Without it trees would find every risky profile (PR-AUC 1.0); published trees reach ~0.6.
LABEL_RESAMPLE_SHARE = 0.25
# Weak smooth trend (logit scale per unit): young, inexperienced, single, renting, car-less
# applicants are slightly riskier in public EDAs; the profile-level noise dominates on purpose.
TREND = {"age": -0.006, "experience": -0.02, "single": 0.15, "rented": 0.2, "no_car": 0.1}

PROFESSIONS: tuple[str, ...] = (
    "Mechanical_engineer", "Software_Developer", "Technical_writer", "Civil_servant", "Librarian",
    "Economist", "Flight_attendant", "Architect", "Designer", "Physician", "Financial_Analyst",
    "Air_traffic_controller", "Politician", "Police_officer", "Artist", "Surveyor",
    "Design_Engineer", "Chemical_engineer", "Hotel_Manager", "Dentist", "Comedian",
    "Biomedical_Engineer", "Graphic_Designer", "Computer_hardware_engineer", "Petroleum_Engineer",
    "Secretary", "Computer_operator", "Chartered_Accountant", "Technician", "Microbiologist",
    "Fashion_Designer", "Aviator", "Psychologist", "Magistrate", "Lawyer", "Firefighter",
    "Engineer", "Official", "Analyst", "Geologist", "Drafter", "Statistician", "Web_designer",
    "Consultant", "Chef", "Army_officer", "Surgeon", "Scientist", "Civil_engineer",
    "Industrial_Engineer", "Technology_specialist",
)

CITIES_BY_STATE: dict[str, tuple[str, ...]] = {
    "Uttar_Pradesh": (
        "Agra", "Aligarh", "Allahabad", "Amroha", "Bahraich", "Bareilly", "Bulandshahr", "Etawah",
        "Farrukhabad", "Firozabad", "Ghaziabad", "Gorakhpur", "Hapur", "Jhansi", "Kanpur", "Loni",
        "Lucknow", "Mathura", "Meerut", "Mirzapur", "Moradabad", "Muzaffarnagar", "Noida", "Orai",
        "Rampur", "Saharanpur", "Shahjahanpur", "Varanasi",
    ),
    "Maharashtra": (
        "Mumbai", "Pune", "Nagpur", "Thane", "Nashik", "Kalyan-Dombivli", "Vasai-Virar",
        "Aurangabad", "Navi_Mumbai", "Solapur", "Bhiwandi", "Amravati", "Kolhapur", "Akola",
        "Latur", "Dhule", "Ahmednagar", "Chandrapur", "Parbhani", "Ichalkaranji", "Jalgaon",
        "Jalna", "Mira-Bhayandar", "Nanded", "Sangli-Miraj_&_Kupwad", "Malegaon", "Ulhasnagar",
        "Panvel", "Satara", "Bhusawal",
    ),
    "Andhra_Pradesh": (
        "Visakhapatnam", "Vijayawada", "Guntur", "Nellore", "Kurnool", "Rajahmundry", "Kakinada",
        "Tirupati", "Anantapur", "Kadapa", "Eluru", "Ongole", "Nandyal", "Machilipatnam", "Adoni",
        "Tenali", "Chittoor", "Hindupur", "Proddatur", "Bhimavaram",
    ),
    "West_Bengal": (
        "Kolkata", "Howrah", "Durgapur", "Asansol", "Siliguri", "Bardhaman", "Kharagpur", "Haldia",
        "Raiganj", "Bally", "Baranagar", "Barasat", "Bhatpara", "Bidhannagar", "Gopalpur",
        "Kamarhati", "Kulti", "Madhyamgram", "Naihati", "Panihati",
    ),
    "Bihar": (
        "Patna", "Gaya", "Bhagalpur", "Muzaffarpur", "Darbhanga", "Purnia", "Arrah", "Begusarai",
        "Katihar", "Munger", "Chapra", "Bettiah", "Saharsa", "Hajipur", "Sasaram", "Dehri",
    ),
    "Tamil_Nadu": (
        "Chennai", "Coimbatore", "Madurai", "Tiruchirappalli", "Salem", "Tirunelveli", "Tiruppur",
        "Vellore", "Erode", "Thoothukudi", "Dindigul", "Thanjavur", "Ranipet", "Sivakasi", "Karur",
        "Udhagamandalam", "Hosur", "Nagercoil",
    ),
    "Karnataka": (
        "Bangalore", "Mysore", "Hubli-Dharwad", "Mangalore", "Belgaum", "Davanagere", "Bellary",
        "Bijapur", "Shimoga", "Tumkur", "Raichur", "Bidar", "Gulbarga", "Hospet", "Gadag-Betageri",
    ),
    "Gujarat": (
        "Ahmedabad", "Surat", "Vadodara", "Rajkot", "Bhavnagar", "Jamnagar", "Junagadh",
        "Gandhinagar", "Anand", "Nadiad", "Morbi", "Surendranagar_Dudhrej", "Bharuch", "Navsari",
    ),
    "Rajasthan": (
        "Jaipur", "Jodhpur", "Kota", "Bikaner", "Ajmer", "Udaipur", "Bhilwara", "Alwar",
        "Bharatpur", "Sikar", "Pali", "Sri_Ganganagar", "Tonk", "Beawar",
    ),
    "Madhya_Pradesh": (
        "Indore", "Bhopal", "Jabalpur", "Gwalior", "Ujjain", "Sagar", "Dewas", "Satna", "Ratlam",
        "Rewa", "Katni", "Singrauli", "Burhanpur", "Khandwa", "Morena",
    ),
    "Kerala": (
        "Thiruvananthapuram", "Kochi", "Kozhikode", "Kollam", "Thrissur", "Alappuzha", "Kannur",
        "Kottayam", "Palakkad", "Malappuram", "Kasaragod", "Pathanamthitta",
    ),
    "Telangana": (
        "Hyderabad", "Warangal", "Nizamabad", "Karimnagar", "Khammam", "Ramagundam", "Mahbubnagar",
        "Nalgonda", "Adilabad", "Suryapet", "Miryalaguda", "Siddipet",
    ),
    "Haryana": (
        "Faridabad", "Gurgaon", "Panipat", "Ambala", "Yamunanagar", "Rohtak", "Hisar", "Karnal",
        "Sonipat", "Panchkula", "Bhiwani", "Sirsa", "Bahadurgarh",
    ),
    "Punjab": (
        "Ludhiana", "Amritsar", "Jalandhar", "Patiala", "Bathinda", "Mohali", "Hoshiarpur",
        "Batala", "Pathankot", "Moga", "Abohar", "Malerkotla", "Khanna", "Phagwara", "Muktsar",
    ),
    "Odisha": (
        "Bhubaneswar", "Cuttack", "Rourkela", "Berhampur", "Sambalpur", "Puri", "Balasore",
        "Bhadrak", "Baripada", "Jharsuguda",
    ),
    "Jharkhand": (
        "Ranchi", "Jamshedpur", "Dhanbad", "Bokaro", "Deoghar", "Phusro", "Hazaribagh", "Giridih",
        "Ramgarh", "Medininagar",
    ),
    "Chhattisgarh": (
        "Raipur", "Bhilai", "Bilaspur", "Korba", "Durg", "Rajnandgaon", "Raigarh", "Jagdalpur",
        "Ambikapur",
    ),
    "Assam": ("Guwahati", "Silchar", "Dibrugarh", "Jorhat", "Nagaon", "Tinsukia", "Tezpur",),
    "Uttarakhand": (
        "Dehradun", "Haridwar", "Roorkee", "Haldwani", "Rudrapur", "Kashipur", "Rishikesh",
    ),
    "Himachal_Pradesh": ("Shimla", "Mandi", "Solan", "Dharamshala",),
    "Jammu_and_Kashmir": ("Srinagar", "Jammu", "Anantnag", "Baramulla", "Sopore",),
    "Delhi": (
        "New_Delhi", "Delhi_city", "Kirari_Suleman_Nagar", "Sultan_Pur_Majra", "Karawal_Nagar",
        "Nangloi_Jat", "Bhalswa_Jahangir_Pur",
    ),
    "Puducherry": ("Puducherry", "Ozhukarai", "Karaikal",),
    "Chandigarh": ("Chandigarh_city",),
    "Tripura": ("Agartala", "Dharmanagar",),
    "Mizoram": ("Aizawl", "Lunglei",),
    "Manipur": ("Imphal", "Thoubal",),
    "Sikkim": ("Gangtok", "Namchi",),
    "Goa": ("Panaji", "Margao", "Vasco_da_Gama", "Mapusa",),
}
CITIES: tuple[str, ...] = tuple(c for cities in CITIES_BY_STATE.values() for c in cities)
STATES: tuple[str, ...] = tuple(CITIES_BY_STATE)
STATE_OF_CITY: dict[str, str] = {c: s for s, cities in CITIES_BY_STATE.items() for c in cities}


def draw_category(rng: np.random.Generator, counts: dict[str, int], size: int) -> np.ndarray:
    """Draw category labels with the real data set's shares."""
    names = np.asarray(list(counts), dtype=object)
    shares = np.asarray(list(counts.values()), dtype=float)
    return names[rng.choice(names.size, size=size, p=shares / shares.sum())]


def draw_replicates(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    """Return per-profile copy counts (10-25 each) that sum to exactly n_rows."""
    counts = rng.integers(REPLICATES[0], REPLICATES[1] + 1, size=n_rows // REPLICATES[0] + 1)
    total = np.cumsum(counts)
    n_profiles = int(np.searchsorted(total, n_rows)) + 1
    counts = counts[:n_profiles]
    counts[-1] -= total[n_profiles - 1] - n_rows  # the last profile takes the remainder
    return counts


def draw_profiles(rng: np.random.Generator, n_profiles: int) -> pd.DataFrame:
    """Draw base applicant profiles (one row each), without labels."""
    experience = rng.integers(EXPERIENCE_RANGE[0], EXPERIENCE_RANGE[1] + 1, size=n_profiles)
    job_yrs = np.minimum(
        experience, rng.integers(JOB_YRS_RANGE[0], JOB_YRS_RANGE[1] + 1, size=n_profiles)
    )
    city = np.asarray(CITIES, dtype=object)[rng.integers(0, len(CITIES), size=n_profiles)]
    return pd.DataFrame(
        {
            "Income": rng.integers(INCOME_RANGE[0], INCOME_RANGE[1] + 1, size=n_profiles),
            "Age": rng.integers(AGE_RANGE[0], AGE_RANGE[1] + 1, size=n_profiles),
            "Experience": experience,
            "Married/Single": draw_category(rng, MARRIED_COUNTS, n_profiles),
            "House_Ownership": draw_category(rng, HOUSE_COUNTS, n_profiles),
            "Car_Ownership": draw_category(rng, CAR_COUNTS, n_profiles),
            "Profession": np.asarray(PROFESSIONS, dtype=object)[
                rng.integers(0, len(PROFESSIONS), size=n_profiles)
            ],
            "CITY": city,
            "STATE": pd.Series(city).map(STATE_OF_CITY).to_numpy(dtype=object),
            "CURRENT_JOB_YRS": job_yrs,
            "CURRENT_HOUSE_YRS": rng.integers(
                HOUSE_YRS_RANGE[0], HOUSE_YRS_RANGE[1] + 1, size=n_profiles
            ),
        }
    )


def risk_score(rng: np.random.Generator, profiles: pd.DataFrame) -> np.ndarray:
    """Return a per-profile risk score: the weak trend plus profile-specific logistic noise."""
    trend = (
        TREND["age"] * (profiles["Age"].to_numpy() - 50)
        + TREND["experience"] * (profiles["Experience"].to_numpy() - 10)
        + TREND["single"] * (profiles["Married/Single"].to_numpy() == "single")
        + TREND["rented"] * (profiles["House_Ownership"].to_numpy() == "rented")
        + TREND["no_car"] * (profiles["Car_Ownership"].to_numpy() == "no")
    )
    return trend + rng.logistic(size=len(profiles))


def label_profiles(score: np.ndarray, copies: np.ndarray, n_rows: int) -> np.ndarray:
    """Flag the riskiest profiles until their copies make up 12.3 % of all rows."""
    order = np.argsort(-score, kind="stable")
    rows_before = np.cumsum(copies[order]) - copies[order]
    label = np.zeros(score.size, dtype=np.int64)
    label[order[rows_before < round(POSITIVE_SHARE * n_rows)]] = 1
    return label


def jitter_copies(rng: np.random.Generator, rows: pd.DataFrame) -> pd.DataFrame:
    """Perturb replicated rows slightly so copies are near-identical rather than identical."""
    n = len(rows)
    income = rows["Income"].to_numpy() * (1 + INCOME_JITTER * rng.standard_normal(n))
    rows["Income"] = np.clip(income.round(), *INCOME_RANGE).astype(np.int64)
    step = rng.choice([-1, 1], size=(n, 2)) * (rng.random((n, 2)) < YEARS_JITTER_PROB)
    job_cap = np.minimum(rows["Experience"].to_numpy(), JOB_YRS_RANGE[1])
    rows["CURRENT_JOB_YRS"] = np.clip(rows["CURRENT_JOB_YRS"].to_numpy() + step[:, 0], 0, job_cap)
    rows["CURRENT_HOUSE_YRS"] = np.clip(
        rows["CURRENT_HOUSE_YRS"].to_numpy() + step[:, 1], *HOUSE_YRS_RANGE
    )
    return rows


def resample_labels(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Redraw a share of the copies' flags at the base rate, so risk is sticky but not certain."""
    resample = rng.random(labels.size) < LABEL_RESAMPLE_SHARE
    fresh = (rng.random(labels.size) < POSITIVE_SHARE).astype(labels.dtype)
    return np.where(resample, fresh, labels)


def generate(n_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Generate `n_rows` applicants (default 60,000) in the real layout, 12.3 % flagged risky."""
    n_rows = DEFAULT_N_ROWS if n_rows is None else n_rows
    if n_rows < 1:
        raise ValueError("n_rows must be positive")
    rng = np.random.default_rng(seed)
    copies = draw_replicates(rng, n_rows)
    profiles = draw_profiles(rng, copies.size)
    profiles[LABEL_COLUMN] = label_profiles(risk_score(rng, profiles), copies, n_rows)
    rows = profiles.iloc[np.repeat(np.arange(copies.size), copies)].reset_index(drop=True)
    rows = jitter_copies(rng, rows)
    rows[LABEL_COLUMN] = resample_labels(rng, rows[LABEL_COLUMN].to_numpy())
    # Shuffle so copies of one profile are scattered through the file, as in the real one.
    rows = rows.iloc[rng.permutation(n_rows)].reset_index(drop=True)
    rows.insert(0, "Id", np.arange(1, n_rows + 1))
    return rows.loc[:, list(RAW_COLUMNS)]
