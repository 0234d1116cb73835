"""Reading Chinese legal text: article structure, what a text states about itself, references it makes."""
